"""Shared helpers: paths, settings isolated from the user's config, timing statistics,
machine description, memory readings."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
CACHE_DIR = Path(os.environ.get("RAG_BENCH_CACHE", BENCH_DIR / ".cache"))
RESULTS_DIR = BENCH_DIR / "results"
SCIFACT_DIR = Path(
    os.environ.get("RAG_BENCH_SCIFACT", ROOT.parent / "shared" / "bench" / "scifact")
)
SEEDS_DIR = ROOT / "seeds"
SEED_QUESTIONS = ROOT / "evals" / "seed.yaml"
VENV_BIN = Path(sys.executable).parent


def isolate_environment() -> None:
    """Product defaults only: no RAG_* variables, no rag.toml from the working directory."""
    for key in list(os.environ):
        if key.startswith("RAG_") and not key.startswith("RAG_BENCH_"):
            del os.environ[key]
    os.environ["RAG_CONFIG"] = str(CACHE_DIR / "no-rag.toml")


def settings(**overrides: Any) -> Any:
    """Product default settings with ``overrides`` (after :func:`isolate_environment`)."""
    from rag.config import load_settings

    return load_settings(**overrides)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), NaN for no values."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats (statistics of no values) replaced by None."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def rss_mb(pid: int | str = "self", field: str = "VmHWM") -> float | None:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process in MiB (Linux)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python, library versions, load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        meminfo = Path("/proc/meminfo").read_text(encoding="utf-8")
        match = re.search(r"^MemTotal:\s+(\d+)\s+kB", meminfo, re.MULTILINE)
        ram_gb = round(int(match.group(1)) / 1024 / 1024, 1) if match else None
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for package in (
        "torch",
        "sentence-transformers",
        "chromadb",
        "bm25s",
        "onnxruntime",
        "openvino",
        "llama_cpp_python",
        "gradio",
    ):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": usable,
        "ram_gb": ram_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
        "load_average": load_average(),
    }


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
