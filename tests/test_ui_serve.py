"""Serving rules with real processes: loopback by default (see test_ui_api), a non-loopback bind
refused without a login, allowed with RAG_AUTH (login enforced) or --insecure (`python app.py`)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_ui_support import (
    QUESTION,
    RAG_BIN,
    ROOT,
    UIProcess,
    copy_index,
    free_port,
    listening_addresses,
    serve_env,
)

from rag.config import Settings


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--host", "0.0.0.0"], {}),
        ([], {"RAG_HOST": "0.0.0.0"}),
        (["--host", "::"], {}),
        (["--host", "192.0.2.10"], {}),
    ],
)
def test_non_loopback_bind_without_login_is_refused(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    result = subprocess.run(
        [str(RAG_BIN), "serve", "--index", str(tmp_path / "index"), "--port", str(port), *args],
        env=serve_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: refusing to serve on "), result.stderr
    assert "RAG_AUTH=user:password" in last and "--insecure" in last
    assert listening_addresses(port) == set()
    assert not (tmp_path / "index").exists(), "nothing is loaded or created before the check"


def test_busy_port_and_bad_llm_fail_fast_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(RAG_BIN), "serve", "--index", str(tmp_path / "index"), "--port", str(port)],
            env=serve_env(),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=str(ROOT),
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"Error: cannot serve on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr

    result = subprocess.run(
        [str(RAG_BIN), "serve", "--index", str(tmp_path / "index"), "--llm", "nonsense"],
        env=serve_env(RAG_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "Error: " in result.stderr and "nonsense" in result.stderr


def test_login_required_when_rag_auth_is_set(seed_index: Settings, tmp_path: Path) -> None:
    from gradio_client import Client

    port = free_port()
    index = copy_index(seed_index.index_dir, tmp_path / "index")
    ui = UIProcess(
        ["--host", "0.0.0.0", "--port", str(port), "--index", str(index)],
        serve_env(RAG_AUTH="tester:s3cret-pass", RAG_LLM="extractive"),
    )
    try:
        ui.wait_ready()
        assert listening_addresses(port) == {"0.0.0.0"}
        assert "login: required" in ui.output
        assert "WARNING" not in ui.output
        local = f"http://127.0.0.1:{port}/"
        config = httpx.get(local + "config", timeout=10)
        assert config.status_code == 401, "the page must not load before login"
        assert "components" not in config.text
        anonymous = httpx.post(local + "gradio_api/call/ask", json={"data": [QUESTION]}, timeout=10)
        assert anonymous.status_code in (401, 403), anonymous.text
        wrong = httpx.post(
            local + "login", data={"username": "tester", "password": "wrong"}, timeout=10
        )
        assert wrong.status_code >= 400
        client = Client(local, auth=("tester", "s3cret-pass"), verbose=False)
        result = client.predict(QUESTION, api_name="/ask")
        assert result["citations"] and not result["refused"]
    finally:
        ui.stop()


def test_insecure_allows_an_open_bind_with_a_warning(seed_index: Settings, tmp_path: Path) -> None:
    """Also starts the app the other documented way: `python app.py` (same options)."""
    from gradio_client import Client

    port = free_port()
    index = copy_index(seed_index.index_dir, tmp_path / "index")
    process = UIProcess(
        ["--host", "0.0.0.0", "--insecure", "--port", str(port)],
        serve_env(RAG_INDEX_DIR=str(index), RAG_LLM="extractive"),
        command=[sys.executable, str(ROOT / "app.py")],
    )
    try:
        process.wait_ready()
        assert "WARNING: serving on 0.0.0.0 without a login (--insecure)" in process.output
        assert listening_addresses(port) == {"0.0.0.0"}
        result = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            QUESTION, api_name="/ask"
        )
        assert result["citations"]
    finally:
        process.stop()
