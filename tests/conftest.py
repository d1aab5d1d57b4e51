"""Shared fixtures: real Chroma (temp dirs, and a real `chroma run` server), real embeddings from
the packaged model, real files on disk."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_FILE = SEEDS / "china_russia_military_supply.txt"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return True
        except Exception:
            time.sleep(0.25)
    return False


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's rag.toml or RAG_* variables."""
    for key in list(os.environ):
        if key.startswith("RAG_") and not key.startswith("RAG_TEST_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAG_CONFIG", str(tmp_path / "no-rag.toml"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a fresh embedded index in a temp dir (extractive answers: no LLM)."""
    return load_settings(index_dir=tmp_path / "index", llm="extractive")


@pytest.fixture(scope="session")
def embedder():
    """The packaged all-MiniLM-L6-v2, loaded once for the whole run."""
    from rag.embeddings import Embedder

    model = Embedder("packaged")
    _ = model.model
    return model


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """An index of seeds/ built once per run (read-only for tests: copy it to modify)."""
    from rag.ingest import ingest

    index_dir = tmp_path_factory.mktemp("seed") / "index"
    seed_settings = load_settings(index_dir=index_dir, llm="extractive")
    report = ingest([SEEDS], seed_settings)
    assert report.ok and report.added >= 1
    return seed_settings


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Chroma server: RAG_TEST_CHROMA_URL (CI starts one), else `chroma run`
    started here on a free loopback port."""
    given = os.environ.get("RAG_TEST_CHROMA_URL")
    if given:
        yield given.rstrip("/")
        return
    chroma = shutil.which("chroma", path=str(VENV_BIN)) or shutil.which("chroma")
    if chroma is None:
        if os.environ.get("RAG_TEST_REQUIRE_SERVER"):
            pytest.fail("the chroma CLI is missing but server tests are required")
        pytest.skip("the chroma CLI is not installed")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [chroma, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_http(f"{url}/api/v2/heartbeat"):
            pytest.fail(f"chroma run did not start: {(data / 'server.log').read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def server_settings(chroma_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings against the Chroma server, with a collection of this test's own."""
    name = "t" + str(abs(hash(request.node.nodeid)))[:12] + str(free_port())
    return load_settings(
        index_dir=tmp_path / "index", chroma_url=chroma_url, collection=name, llm="extractive"
    )
