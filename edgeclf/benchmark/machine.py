"""What machine a benchmark ran on: CPU model, cores, frequency governor, memory, board, OS, Python.

Read from /proc and /sys where they exist (Linux, Raspberry Pi, Jetson) and ``platform`` elsewhere;
anything unreadable is left out rather than guessed, so figures from two machines can be told apart.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _cpuinfo_value(*keys: str) -> str | None:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in keys and value.strip():
            return value.strip()
    return None


def _memory_gb() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 ** 2, 2)
    return None


def machine_info() -> dict[str, Any]:
    """A JSON-able description of this machine (only the fields that could be read)."""
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    tegra = _read("/etc/nv_tegra_release")
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": _cpuinfo_value("model name", "Model name", "Hardware", "cpu model") or platform.processor()
        or platform.machine(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "max_mhz": int(khz) // 1000 if khz and khz.isdigit() else None,
        "memory_gb": _memory_gb(),
        "board": _read("/proc/device-tree/model"),
        "jetson": tegra.splitlines()[0] if tegra else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    return {k: v for k, v in info.items() if v not in (None, "")}


def describe(info: dict[str, Any]) -> str:
    """One line for table titles: CPU, cores, governor, board."""
    parts = [str(info.get("board") or info.get("cpu", "?")), f"{info.get('cores_usable', '?')} cores"]
    if "governor" in info:
        parts.append(f"governor {info['governor']}")
    return ", ".join(parts)
