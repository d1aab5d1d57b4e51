"""Helpers for the web UI tests (no tests here): start the real app — as a `rag serve` process or
in this process — and drive a real headless Chromium. Imported by tests/test_ui_*.py,
tests/browser/ and tests/reliability/test_ui_*.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, rag_env

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_FILE = SEEDS / "china_russia_military_supply.txt"
RAG_BIN = Path(sys.executable).parent / "rag"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY = re.compile(r"rag web UI: (\S+)\s+\(ready in ([\d.]+) s; ([\d.]+) s CPU\)")
QUESTION = "What share of Russia's microelectronics came from China?"
FOLLOW_UP = "Who supplies them?"
UNANSWERABLE = "Who won the 2022 football World Cup?"


def load_factor() -> float:
    """How oversubscribed the CPUs are now (1.0 when idle): timing limits scale with it."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def serve_env(**extra: str | None) -> dict[str, str]:
    """Environment for a `rag serve` process: no RAG_* of the developer, no rag.toml, offline."""
    return rag_env(
        **{"RAG_CONFIG": "/nonexistent/rag.toml", "GRADIO_ANALYTICS_ENABLED": "False", **extra}
    )


def copy_index(source: Path, target: Path) -> Path:
    """A private copy of an index folder (tests that upload must not change the shared one)."""
    shutil.copytree(source, target)
    return target


class UIProcess:
    """A real `rag serve` process; its output is collected while it runs."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path = ROOT,
        command: list[str] | None = None,
    ):
        """``command`` (default: ``rag serve``) runs with ``args`` appended."""
        self.args = args
        self.started = time.monotonic()
        self.load = load_factor()  # the highest seen while starting (timing limits scale)
        self.process = subprocess.Popen(
            [*(command or [str(RAG_BIN), "serve"]), *args],
            env=env,
            cwd=str(cwd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self.ready_s: float | None = None  # process start → ready line (what a user waits)
        self.reported_s: float | None = None  # what the app logged
        self.cpu_s: float | None = None  # CPU time the process used to get ready
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = READY.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self.reported_s = float(match.group(2))
                self.cpu_s = float(match.group(3))
                self.ready_s = time.monotonic() - self.started
                self.load = max(self.load, load_factor())
                self._ready.set()
        self._ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 180) -> str:
        self._ready.wait(timeout)
        if self.url is None:
            self.stop()
            raise AssertionError(f"rag serve did not start:\n{self.output[-4000:]}")
        # The app logs index stats and the LLM right after the URL line.
        deadline = time.monotonic() + 10
        while "LLM:" not in self.output and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.url

    def wait_exit(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._reader.join(5)


@contextlib.contextmanager
def running_ui(
    index_dir: Path, *args: str, env: dict[str, str | None] | None = None, timeout: float = 180
) -> Iterator[UIProcess]:
    """`rag serve --index INDEX --port FREE ARGS…`, ready; stopped afterwards."""
    port = free_port()
    ui = UIProcess(
        ["--index", str(index_dir), "--port", str(port), *args],
        serve_env(GRADIO_TEMP_DIR=str(index_dir.parent / "gradio-tmp"), **(env or {})),
    )
    try:
        ui.wait_ready(timeout)
        yield ui
    finally:
        ui.stop()


@contextlib.contextmanager
def in_process_ui(settings: Any) -> Iterator[str]:
    """The same app (rag.ui.launch) served from this process on a free port; yields its URL."""
    from rag.ui import launch

    settings = settings.with_overrides(port=free_port())
    demo, url, _ = launch(settings, block=False)
    try:
        yield url
    finally:
        demo.close()


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port`` (Linux /proc/net/tcp*)."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError), open(table, encoding="utf-8") as handle:
            next(handle)
            for row in handle:
                fields = row.split()
                address, hex_port = fields[1].split(":")
                if fields[3] != "0A" or int(hex_port, 16) != port:
                    continue
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8))
                    found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def require_browser() -> Path:
    """/usr/bin/chromium, or skip (fail when RAG_TEST_REQUIRE_BROWSER=1, as in CI)."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    if os.environ.get("RAG_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " — required because RAG_TEST_REQUIRE_BROWSER=1")
    pytest.skip(reason)


ANSWERED = ".rag-answer, .rag-refusal, .rag-error"


class ChatPage:
    """The chat page in a fresh browser context, with what a test needs to watch: requests to
    other hosts, dialogs (alert/confirm: a script ran), console errors."""

    def __init__(self, browser: Any, url: str, width: int = 1366, height: int = 900):
        self.url = url
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", self._on_dialog)
        self.page.on(
            "console",
            lambda message: (
                self.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        self.page.on("pageerror", lambda error: self.console_errors.append(str(error)))

    def _on_dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self) -> ChatPage:
        self.page.goto(self.url)
        self.page.wait_for_selector("#rag-chat", timeout=60_000)
        self.page.wait_for_selector("#rag-stats .rag-stats", timeout=60_000)
        return self

    @property
    def external_requests(self) -> list[str]:
        origin = self.url.rstrip("/")
        return [
            url
            for url in self.requests
            if not (url.startswith(origin) or url.startswith(("data:", "blob:", "about:")))
        ]

    def ensure_sidebar(self) -> None:
        if self.page.locator(".sidebar.open").count() == 0:
            self.page.locator("button.toggle-button").first.click()
            self.page.wait_for_selector(".sidebar.open", timeout=10_000)

    def set_extractive(self, on: bool = True) -> None:
        self.ensure_sidebar()
        box = self.page.locator("#rag-extractive input[type=checkbox]")
        if not box.is_visible():
            self.page.locator("#rag-settings button").first.click()
            box.wait_for(state="visible", timeout=10_000)
        if box.is_checked() != on:
            box.click()
        assert box.is_checked() == on

    def ask(self, question: str, timeout: float = 120_000) -> Any:
        """Type and send a question; returns the new answer/refusal/error element."""
        before = self.page.locator(ANSWERED).count()
        box = self.page.locator("#rag-question textarea")
        box.fill(question)
        box.press("Enter")
        self.page.wait_for_function(
            f"n => document.querySelectorAll({json.dumps(ANSWERED)}).length > n",
            arg=before,
            timeout=timeout,
        )
        return self.page.locator(ANSWERED).nth(before)

    def expand_last_sources(self, timeout: float = 15.0) -> Any:
        """Open the newest Sources block. The chat re-renders once more when the answer's event
        completes (which closes the block again), so open it until it stays open."""
        title = self.page.locator(".thought-group .title").last
        chunk = self.page.locator(".rag-sources .rag-chunk").last
        deadline = time.monotonic() + timeout
        steady = 0
        while steady < 3:
            if time.monotonic() > deadline:
                raise AssertionError("the Sources block does not stay open")
            if chunk.count() and chunk.is_visible():
                steady += 1
            else:
                steady = 0
                title.click()
            self.page.wait_for_timeout(250)
        return chunk

    def upload(self, files: list[Any], timeout: float = 120_000) -> Any:
        """Upload through the file box; returns the status element once it reports."""
        self.ensure_sidebar()
        status = self.page.locator("#rag-upload-status .rag-ingest")
        previous = status.inner_text() if status.count() else None
        self.page.locator("#rag-upload input[type=file]").set_input_files(files)
        self.page.wait_for_function(
            "prev => { const el = document.querySelector('#rag-upload-status .rag-ingest');"
            " return el && el.innerText !== prev; }",
            arg=previous,
            timeout=timeout,
        )
        return status

    def screenshot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()
