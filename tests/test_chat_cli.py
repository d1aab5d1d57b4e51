"""`rag chat` as a user runs it (a real process over the seed index): commands, checked answers
only, follow-ups, and Ctrl-C stopping an answer without leaving the chat."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

from test_ui_support import QUESTION, RAG_BIN

from rag.config import Settings
from tests.conftest import rag_env


def test_chat_commands_answers_and_follow_ups(seed_index: Settings, run_rag) -> None:
    script = "\n".join(
        ["/help", QUESTION, "/sources", "Who supplies them?", "/bogus", "/reset", "/quit", ""]
    )
    result = run_rag(
        "chat", "--index", seed_index.index_dir, "--llm", "extractive", input=script, timeout=180
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "/sources" in out and "/reset" in out and "Ctrl-C" in out  # the /help listing
    assert "90%" in out and "[1]" in out
    assert "china_russia_military_supply.txt" in out  # /sources
    assert "(unknown command /bogus; /help lists them)" in out
    assert "(conversation cleared)" in out
    assert "/help" not in out.split("bot>")[1]  # /help was not sent as a question


def _read_until(process: subprocess.Popen, needle: str, timeout: float) -> str:
    """stdout until ``needle`` appears (or the timeout)."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    seen = b""
    deadline = time.monotonic() + timeout
    while needle.encode() not in seen and time.monotonic() < deadline:
        if selector.select(timeout=0.2):
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_ctrl_c_stops_an_answer_and_a_second_quits(seed_index: Settings, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [str(RAG_BIN), "chat", "--index", str(seed_index.index_dir), "--llm", "local"],
        env=rag_env(),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Whatever the test runner's own disposition, the child gets Ctrl-C as a user would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert "you> " in _read_until(process, "you> ", 120)
        assert process.stdin is not None
        process.stdin.write(f"{QUESTION}\n".encode())
        process.stdin.flush()
        assert "bot> " in _read_until(process, "bot> ", 60)
        process.send_signal(signal.SIGINT)  # the local model is loading or writing now
        after = _read_until(process, "you> ", 60)
        assert "(stopped)" in after and "you> " in after, after
        assert process.poll() is None, "one Ctrl-C must not end the chat"
        # Let the prompt start waiting for input (a signal landing in the microseconds
        # between printing "you> " and reading is a race no person's Ctrl-C can win).
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) in (0, 1, 130)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
