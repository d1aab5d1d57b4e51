"""Startup: process start → web UI ready (`rag serve` on the seed index, default local LLM),
and the server's peak resident memory after answering one question through its API."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import VENV_BIN, log, median, rss_mb

TARGET_S = 15.0
READY_MARK = "rag web UI:"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except Exception:
        return False


def start_once(index_dir: Path, ask: bool, timeout: float = 180.0) -> dict[str, Any]:
    """Start `rag serve`, time HTTP 200 and the 'ready' log line, optionally ask once, stop."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [str(VENV_BIN / "rag"), "serve", "--port", str(port), "--index", str(index_dir)]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    ready_at: list[float] = []
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip())
            if READY_MARK in line and not ready_at:
                ready_at.append(time.perf_counter())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    http_at: float | None = None
    try:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError("rag serve exited: " + " | ".join(lines[-5:]))
            if http_at is None and _http_ok(url):
                http_at = time.perf_counter()
            if http_at is not None and ready_at:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("rag serve not ready in time: " + " | ".join(lines[-5:]))
        ready_rss = rss_mb(process.pid)
        asked = None
        if ask:
            asked = _ask(url)
        peak = rss_mb(process.pid)
        return {
            "startup_s": round(max(http_at, ready_at[0]) - started, 2),
            "http_200_s": round(http_at - started, 2),
            "ready_line_s": round(ready_at[0] - started, 2),
            "rss_ready_mb": ready_rss,
            "peak_rss_mb": peak,
            "asked": asked,
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ask(url: str) -> dict[str, Any] | str:
    """One question through the UI's API (the Gradio client), so peak memory includes an
    answer with the local LLM."""
    try:
        from gradio_client import Client

        client = Client(url, verbose=False)
        began = time.perf_counter()
        result = client.predict(
            "Roughly what fraction of Russia's microelectronics came from China in 2023?",
            api_name="/ask",
        )
        seconds = time.perf_counter() - began
        refused = result.get("refused") if isinstance(result, dict) else None
        return {"seconds": round(seconds, 2), "refused": refused}
    except Exception as error:  # memory is still reported; say why no answer was measured
        return f"not asked: {type(error).__name__}: {str(error)[:200]}"


def run(quick: bool = False, *, index_dir: Path | None = None) -> dict[str, Any]:
    from benchmarks.answer_latency import seed_index

    index_dir = seed_index(index_dir)
    repeats = 1 if quick else 3
    runs = []
    for number in range(repeats):
        runs.append(start_once(index_dir, ask=number == 0))
        log(f"startup: run {number + 1}: {runs[-1]['startup_s']} s")
    return {
        "startup_s": round(median([r["startup_s"] for r in runs]), 2),
        "peak_rss_mb": max((r["peak_rss_mb"] or 0.0) for r in runs),
        "runs": runs,
        "target_s": TARGET_S,
    }
