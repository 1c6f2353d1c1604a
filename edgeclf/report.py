"""A report as a list of blocks, rendered both as Markdown (beside its PNGs) and as one self-contained HTML file.

One structure, two renderers, so ``report.md`` and ``report.html`` can never disagree.
"""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgeclf.fileio import atomic_write_text


@dataclass
class Block:
    """One piece of a report: ``kind`` is heading | text | table | image | code."""

    kind: str
    text: str = ""
    rows: list[Sequence[Any]] = field(default_factory=list)
    header: Sequence[str] = ()
    path: Path | None = None
    level: int = 2


def heading(text: str, level: int = 2) -> Block:
    return Block("heading", text, level=level)


def text(body: str) -> Block:
    return Block("text", body)


def table(header: Sequence[str], rows: list[Sequence[Any]]) -> Block:
    return Block("table", header=header, rows=rows)


def image(path: Path, caption: str) -> Block:
    return Block("image", caption, path=Path(path))


def code(body: str) -> Block:
    return Block("code", body)


def to_markdown(blocks: list[Block], base: Path) -> str:
    """Markdown with images linked relative to ``base`` (the folder the .md is written to)."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            out.append(f"{'#' * b.level} {b.text}")
        elif b.kind == "text":
            out.append(b.text)
        elif b.kind == "table":
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out.extend("| " + " | ".join(str(c) for c in row) + " |" for row in b.rows)
        elif b.kind == "image" and b.path is not None and b.path.is_file():
            out.append(f"![{b.text}]({os.path.relpath(b.path, base)})")
        elif b.kind == "code":
            out.append(f"```\n{b.text}\n```")
        out.append("")
    return "\n".join(out)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;"
        "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:.75rem;overflow-x:auto}"
        "figcaption{color:#666;font-size:.9rem}")


def to_html(blocks: list[Block], title: str) -> str:
    """One HTML file with the images embedded, so it can be mailed or attached as it is."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind == "heading":
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif b.kind == "text":
            out.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif b.kind == "image" and b.path is not None and b.path.is_file():
            data = base64.b64encode(b.path.read_bytes()).decode()
            out.append(f"<figure><img alt='{html.escape(b.text)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
        elif b.kind == "code":
            out.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(blocks: list[Block], folder: Path, name: str = "report", title: str = "edgeclf report") -> list[Path]:
    """Write ``<name>.md`` and ``<name>.html`` into ``folder`` atomically; return both paths."""
    md, page = folder / f"{name}.md", folder / f"{name}.html"
    atomic_write_text(md, to_markdown(blocks, folder))
    atomic_write_text(page, to_html(blocks, title))
    return [md, page]
