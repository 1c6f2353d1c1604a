"""The parity gate's statistics: does one model's output degrade another's, judged with a stated confidence?

``edgeclf.conversion`` judges each converted file against its Keras source with it, and ``bench --pick`` each
candidate file against the float file, so both measure the same thing with this one implementation (numpy only).

A 1000-class model sees many real images as near-ties, and any rounding flips their top-1; counting those as
errors refuses every good int8 file. So the gate counts two things that mean degradation:

* flips among *decisive* images - those whose reference top-1 leads its runner-up by at least ``margin``;
* with labelled images, the accuracy drop: images the reference gets right and the file gets wrong, net of
  the reverse.

Each is a binomial count judged with a one-sided 95 % Clopper-Pearson bound: a check *fails* when even the
lower bound exceeds its limit, *passes* when the upper bound is within it, and otherwise cannot tell. The file
fails if either check fails, passes if either passes, and is otherwise ``unverified`` (too few images to tell),
which is not a pass. A file whose probabilities stay within ``EQUIVALENT_DP`` of the reference's on every one of
at least ``EQUIVALENT_MIN_IMAGES`` images passes as numerically equivalent (a float conversion computes the
same function up to rounding: a top-1 can only move where two classes tie within twice that distance). Top-1
agreement on all images, top-5 overlap and mean KL(reference || file) (both floored at 1e-4) are reported.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
DEFAULT_MARGIN = 0.2  # good Lite0 int8 files flip near-ties only (convert_sizes.json: 0 of 75 decisive flip)
KL_FLOOR = 1e-4  # below a uint8 softmax's step (1/256): zeros of a quantised output would swamp the KL otherwise
MAX_FLIP_RATE = {"fp32": 0.05, "fp16": 0.05, "dynamic": 0.10, "int8": 0.10}
MAX_ACCURACY_DROP = {"fp32": 0.005, "fp16": 0.005, "dynamic": 0.01, "int8": 0.01}
EQUIVALENT_DP = 0.01
EQUIVALENT_MIN_IMAGES = 20


@dataclass(frozen=True)
class Limits:
    """What the gate allows: the decisive margin, the flip rate among decisive images, the accuracy drop."""

    margin: float = DEFAULT_MARGIN
    max_flip_rate: float = MAX_FLIP_RATE["int8"]
    max_accuracy_drop: float = MAX_ACCURACY_DROP["int8"]

    @classmethod
    def for_quant(cls, quant: str, margin: float | None = None, max_flip_rate: float | dict[str, float] | None = None,
                  max_accuracy_drop: float | dict[str, float] | None = None) -> "Limits":
        """The limits of ``quant``: a number applies to every mode, a dict overrides the per-mode defaults."""
        def pick(given: float | dict[str, float] | None, defaults: dict[str, float]) -> float:
            return float(given) if isinstance(given, (int, float)) else {**defaults, **(given or {})}[quant]
        return cls(DEFAULT_MARGIN if margin is None else float(margin), pick(max_flip_rate, MAX_FLIP_RATE),
                   pick(max_accuracy_drop, MAX_ACCURACY_DROP))


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), each term in log space (exact big-integer terms overflow a float past
    about a thousand trials)."""
    if p <= 0 or k >= n:
        return 1.0
    if p >= 1:
        return 0.0
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, sum(math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
                        for i in range(k + 1)))


def _solve(f: Any, target: float) -> float:
    """p in [0, 1] with f(p) = target for a decreasing f (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) > target else (lo, mid)
    return (lo + hi) / 2


def rate_bounds(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds of a binomial rate from ``k`` events in ``n`` trials."""
    lower = 0.0 if k == 0 else _solve(lambda p: _binom_cdf(k - 1, n, p), confidence)  # P(X >= k) = 1 - confidence
    return lower, _upper(k, n, confidence)


def _upper(k: int, n: int, confidence: float) -> float:
    """The one-sided upper Clopper-Pearson bound alone (k + 1 terms per step, so cheap for few events)."""
    return 1.0 if k >= n else _solve(lambda p: _binom_cdf(k, n, p), 1 - confidence)


def needed(limit: float, confidence: float = CONFIDENCE, events: int = 0) -> int:
    """Trials needed to show a rate below ``limit`` with ``events`` events among them (none: the rule of three,
    exactly); 0 for a limit of 0 (no count shows it) or of 1 and above (anything meets it)."""
    if not 0 < limit < 1:
        return 0
    n = math.ceil(math.log(1 - confidence) / math.log(1 - limit))
    if events == 0:
        return n
    lo, hi = max(n, events), max(n, events) * 2
    while _upper(events, hi, confidence) > limit:
        lo, hi = hi, hi * 2
    while lo < hi:  # the smallest n in [lo, hi] whose upper bound is within the limit
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _upper(events, mid, confidence) <= limit else (mid + 1, hi)
    return lo


@dataclass
class Parity:
    """The gate's figures and verdict for one file against its reference (a converted file against its source)."""

    images: int
    image_source: str
    status: str               # passed | failed | unverified
    reason: str
    agreement: float          # top-1 agreement on all images, near-ties included (reported, not gated)
    top5_overlap: float       # mean share of the source's top-5 classes also in the file's top-5
    mean_kl: float            # mean KL(source || file), nats
    max_abs_diff: float       # over all probabilities of all images
    mean_abs_diff: float
    margin: float
    decisive: int             # images whose source top-1 leads its runner-up by >= margin
    flips: int                # decisive images whose top-1 the file changes
    flip_bounds: tuple[float, float]
    max_flip_rate: float
    labelled: int = 0
    source_accuracy: float | None = None
    file_accuracy: float | None = None
    accuracy_drop: float | None = None      # source minus file, as a fraction
    drop_bounds: tuple[float, float] | None = None
    max_accuracy_drop: float | None = None
    device: str = "cpu"

    @property
    def passed(self) -> bool:
        """Only a pass is a pass: ``unverified`` files are treated as not passing."""
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        """One line with the verdict's reason and the main figures, for error messages and the terminal."""
        acc = (f", accuracy {self.source_accuracy:.4f} -> {self.file_accuracy:.4f} on {self.labelled} labelled"
               if self.labelled else "")
        return (f"{self.reason} [{self.flips}/{self.decisive} decisive flips (margin {self.margin:g}){acc}; "
                f"top-1 agreement {self.agreement:.4f}, top-5 overlap {self.top5_overlap:.3f}, "
                f"mean KL {self.mean_kl:.4f} on {self.images} {self.image_source} images]")


def _verdict(k: int, n: int, limit: float) -> tuple[str, tuple[float, float]]:
    """passed / failed / unknown for ``k`` bad events in ``n`` trials against a rate ``limit`` (1: anything passes)."""
    if limit >= 1:
        return "passed", rate_bounds(k, n) if n else (0.0, 1.0)
    if n == 0:
        return "unknown", (0.0, 1.0)
    lo, hi = rate_bounds(k, n)
    return ("failed" if lo > limit else "passed" if hi <= limit else "unknown"), (round(lo, 4), round(hi, 4))


def judge(reference: np.ndarray, got: np.ndarray, limits: Limits, image_source: str,
          truth: np.ndarray | None = None, device: str = "cpu") -> Parity:
    """The gate on probabilities already computed: ``reference`` (source) and ``got`` (file), ``truth`` if labelled."""
    n, classes = reference.shape
    src_top, got_top = reference.argmax(-1), got.argmax(-1)
    ordered = np.sort(reference, axis=-1)
    decisive = ordered[:, -1] - ordered[:, -2] >= limits.margin if classes > 1 else np.ones(n, bool)
    flips = int(np.sum(decisive & (src_top != got_top)))
    n_dec = int(decisive.sum())
    flip_status, flip_bounds = _verdict(flips, n_dec, limits.max_flip_rate)
    k5 = min(5, classes)
    top5 = np.mean([len(set(a) & set(b)) / k5 for a, b in zip(np.argsort(-reference, -1)[:, :k5],
                                                               np.argsort(-got, -1)[:, :k5])])
    kl = np.mean(np.sum(reference * (np.log(np.maximum(reference, KL_FLOOR)) - np.log(np.maximum(got, KL_FLOOR))), -1))
    diff = np.abs(got - reference)
    fields: dict[str, Any] = {}
    acc_status = "unknown"
    if truth is not None and len(truth):
        src_ok, got_ok = src_top == truth, got_top == truth
        lost, gained = int(np.sum(src_ok & ~got_ok)), int(np.sum(~src_ok & got_ok))
        lo, hi = rate_bounds(lost, n)
        drop_lo, drop_hi = lo - gained / n, hi - gained / n
        limit = limits.max_accuracy_drop
        acc_status = "failed" if drop_lo > limit else "passed" if drop_hi <= limit or limit >= 1 else "unknown"
        fields = dict(labelled=n, source_accuracy=round(float(src_ok.mean()), 4),
                      file_accuracy=round(float(got_ok.mean()), 4), accuracy_drop=round((lost - gained) / n, 4),
                      drop_bounds=(round(drop_lo, 4), round(drop_hi, 4)), max_accuracy_drop=limits.max_accuracy_drop)
    status, reason = _reason(flip_status, flips, n_dec, n, limits, acc_status, fields)
    if status == "unverified" and n >= EQUIVALENT_MIN_IMAGES and float(diff.max()) <= EQUIVALENT_DP:
        status, reason = "passed", (f"numerically equivalent: no probability moves more than {float(diff.max()):.2g} "
                                    f"(limit {EQUIVALENT_DP:g}) on {n} images")
    return Parity(n, image_source, status, reason, round(float(np.mean(src_top == got_top)), 6), round(float(top5), 4),
                  round(max(0.0, float(kl)), 6), round(float(diff.max()), 6), round(float(diff.mean()), 6), limits.margin,
                  n_dec, flips, flip_bounds, limits.max_flip_rate, device=device, **fields)


def _reason(flip_status: str, flips: int, n_dec: int, n: int, limits: Limits, acc_status: str,
            acc: dict[str, Any]) -> tuple[str, str]:
    """The verdict and the sentence that explains it (what would fix an ``unverified``)."""
    drop = (f"accuracy drop {100 * acc['accuracy_drop']:.1f} pp (95 % bound {100 * acc['drop_bounds'][1]:.1f} pp, "
            f"limit {100 * limits.max_accuracy_drop:g} pp)") if acc else ""
    rate = (f"{flips} of {n_dec} decisive images flip (95 % bounds {rate_bounds(flips, n_dec)[0]:.1%}.."
            f"{rate_bounds(flips, n_dec)[1]:.1%}, limit {limits.max_flip_rate:.0%})") if n_dec else ""
    if "failed" in (flip_status, acc_status):
        return "failed", "; ".join(s for s, st in ((drop, acc_status), (rate, flip_status)) if st == "failed")
    if acc_status == "passed":
        return "passed", drop
    if flip_status == "passed":
        return "passed", rate + (f" (labelled images too few to bound the {drop})" if acc else "")
    short = (f"only {n_dec} of {n} check images are decisive (margin {limits.margin:g})" + (f" and {flips} flip" if flips else "")
             + f"; the gate needs at least {needed(limits.max_flip_rate)} decisive images with no flip to show a "
             f"flip rate below {limits.max_flip_rate:.0%}")
    if acc:
        short += f", or {needed(limits.max_accuracy_drop)} labelled images to bound the {drop}"
    return "unverified", short + ": pass --check with more images, or lower --margin"
