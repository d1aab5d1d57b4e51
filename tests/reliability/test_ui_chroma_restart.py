"""The Chroma server stops while the app runs: questions get a clear "index unavailable" answer
(API and chat), nothing crashes, and the app recovers by itself once the server is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_ui_support import QUESTION, SEEDS, free_port, in_process_ui

from rag.config import load_settings

VENV_BIN = Path(sys.executable).parent


def _chroma_cli() -> str:
    chroma = shutil.which("chroma", path=str(VENV_BIN)) or shutil.which("chroma")
    if chroma is None:
        if os.environ.get("RAG_TEST_REQUIRE_SERVER"):
            pytest.fail("the chroma CLI is missing but server tests are required")
        pytest.skip("the chroma CLI is not installed")
    return chroma


@contextmanager
def chroma_server(path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`chroma run` on loopback; waits for its heartbeat."""
    import httpx

    log = open(path.parent / f"chroma-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [_chroma_cli(), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chroma run did not start: {log.name}")
            time.sleep(0.25)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


def _cited(result: dict) -> bool:
    return not result["refused"] and bool(result["citations"])


@pytest.mark.server
def test_store_outage_gives_a_clear_error_then_recovers(shared_embedder, tmp_path: Path) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from rag.ingest import ingest

    port = free_port()
    data = tmp_path / "chroma"
    settings = load_settings(
        index_dir=tmp_path / "index",
        chroma_url=f"http://127.0.0.1:{port}",
        collection="ui-outage",
        llm="extractive",
    )
    with chroma_server(data, port) as first:
        assert ingest([SEEDS], settings).ok
        with in_process_ui(settings) as url:
            client = Client(url, verbose=False)
            assert _cited(client.predict(QUESTION, api_name="/ask"))

            first.terminate()
            first.wait(20)
            started = time.monotonic()
            with pytest.raises(AppError, match="index unavailable") as raised:
                client.predict(QUESTION, api_name="/ask")
            assert time.monotonic() - started < 30, "the outage must be reported promptly"
            assert f"127.0.0.1:{port}" in str(raised.value)
            assert "Traceback" not in str(raised.value)

            job = client.submit(QUESTION, 4, None, True, api_name="/chat")
            job.result(timeout=60)
            last = str(job.outputs()[-1][-1]["content"])
            assert "rag-error" in last and "index unavailable" in last, last

            status, stats = client.predict(api_name="/reindex")
            assert "index unavailable" in status and "index unavailable" in stats

            with chroma_server(data, port):
                deadline = time.monotonic() + 60
                while True:  # no restart of the app: the store reconnects on its own
                    try:
                        result = client.predict(QUESTION, api_name="/ask")
                        break
                    except AppError as error:
                        assert "index unavailable" in str(error)
                        assert time.monotonic() < deadline, "the app did not recover"
                        time.sleep(1)
                assert _cited(result)
                status, _ = client.predict(api_name="/reindex")
                assert "1 unchanged" in status and "0 failed" in status, status
