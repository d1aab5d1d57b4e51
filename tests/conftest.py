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
            log = (data / "server.log").read_text(encoding="utf-8")
            pytest.fail(f"chroma run did not start: {log[-2000:]}")
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


# Fixtures for the ingestion, store, CLI and reliability tests --------------------------------

RAG_BIN = VENV_BIN / "rag"


@pytest.fixture(scope="session")
def shared_embedder(embedder):
    """The session ``embedder`` also serves ``get_embedder()`` (used by RAG and ingest()), so the
    model loads once per run even in tests that go through the public API."""
    from rag.embeddings import _SHARED

    _SHARED.setdefault(("packaged", embedder.batch_size), embedder)
    return embedder


def passage_reader_copy(folder: Path) -> Path:
    """The shipped reader's weights copied to ``folder``, declared a passage reader
    (``"input": "passage"`` in reader.json, as ``python -m rag.train.reader --passages`` writes
    it): the mechanics of passage reading, whatever the model's quality."""
    import json

    from rag.reader import READER_DIR

    shutil.copytree(READER_DIR, folder)
    info = json.loads((folder / "reader.json").read_text(encoding="utf-8"))
    (folder / "reader.json").write_text(json.dumps({**info, "input": "passage"}))
    return folder


def write_doctest_readme(folder: Path, extra: str = "") -> Path:
    """A reStructuredText README of 29 short doctest blocks, each under its lead-in (the shape
    that fills the reader's candidate count), then ``extra``: the docs folder to ingest."""
    examples = "".join(
        f"Step {n} of the tour shows another call:\n\n>>> tern.step({n})\n{n * 7}\n\n"
        for n in range(1, 30)
    )
    docs = folder / "docs"
    docs.mkdir()
    (docs / "tern.rst").write_text(
        "Tern\n====\n\nTern counts seabirds.\n\nTour\n----\n\n" + examples + extra,
        encoding="utf-8",
    )
    return docs


def write_pdf(
    path: Path,
    pages: list[str],
    title: str | None = None,
    user_password: str | None = None,
    owner_password: str | None = None,
) -> Path:
    """A real PDF with one text page per item (an empty string makes a blank page), written with
    pypdf (Helvetica, latin-1 text). Passwords encrypt it (RC4-128: no extra crypto package)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        lines = []
        for line in text.split("\n") if text else []:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            lines.append(f"({escaped}) Tj T*")
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 11 Tf 14 TL 72 720 Td {' '.join(lines)} ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    if title:
        writer.add_metadata({"/Title": title})
    if user_password is not None or owner_password is not None:
        writer.encrypt(user_password or "", owner_password, algorithm="RC4-128")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def write_docx(
    path: Path,
    paragraphs: list[str],
    table: list[list[str]] | None = None,
    heading: str | None = None,
    title: str | None = None,
) -> Path:
    """A real .docx (python-docx): optional heading, paragraphs, then an optional table."""
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    if heading:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))
    return path


@pytest.fixture
def make_pdf():
    return write_pdf


@pytest.fixture
def make_docx():
    return write_docx


def rag_env(**extra: str | None) -> dict[str, str]:
    """Environment for a `rag` subprocess: this process's (RAG_* already cleared by the autouse
    fixture), offline, no rag.toml unless RAG_CONFIG is given, plus ``extra`` (None: unset)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        RAG_CONFIG=os.environ.get("RAG_CONFIG", "/nonexistent/rag.toml"),
        PYTHONUNBUFFERED="1",
    )
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def drop_permission_bypass() -> None:
    """preexec_fn: remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so a
    process started as root obeys file permissions (chmod 000 files become unreadable)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def permissions_enforceable() -> str | None:
    """None when chmod 000 can be made to block reads for our subprocesses, else why not."""
    if os.geteuid() != 0:
        return None
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "print(1)"],
            preexec_fn=drop_permission_bypass,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"running as root and cannot drop CAP_DAC_OVERRIDE ({error})"
    if probe.returncode != 0:
        return "running as root and cannot drop CAP_DAC_OVERRIDE"
    return None


@pytest.fixture
def run_rag(tmp_path: Path):
    """Run the real `rag` console script: run_rag("ingest", path, "--json", env={...}).
    ``obey_permissions=True``: as root, without the capabilities that bypass file modes."""

    def run(
        *args: str | Path,
        env: dict[str, str | None] | None = None,
        input: str | None = None,
        timeout: float = 240,
        cwd: Path | None = None,
        obey_permissions: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        drop = obey_permissions and os.geteuid() == 0
        return subprocess.run(
            [str(RAG_BIN), *map(str, args)],
            env=rag_env(**(env or {})),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(cwd or tmp_path),
            preexec_fn=drop_permission_bypass if drop else None,
        )

    return run


@pytest.fixture
def unreadable_file_support() -> None:
    """Skip (with the reason) where chmod 000 cannot be made to block reads."""
    reason = permissions_enforceable()
    if reason:
        pytest.skip(reason)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 1, an 'Error: …' line on stderr containing ``needles``, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), output
    for needle in needles:
        assert needle.lower() in result.stderr.lower(), output


@pytest.fixture
def clean_failure():
    """assert_clean_failure as a fixture (test modules don't import conftest)."""
    return assert_clean_failure


_DUMP_SCRIPT = """
import json, sys
from rag.config import load_settings
from rag.store import Store
settings = load_settings(index_dir=sys.argv[1], chroma_url=sys.argv[2] or None,
                         collection=sys.argv[3])
out = {}
for ids, fields in Store(settings, None, None).iter_records(("documents", "metadatas")):
    for i, text, meta in zip(ids, fields["documents"], fields["metadatas"]):
        if i in out:
            print("DUPLICATE", i, file=sys.stderr)
            sys.exit(3)
        out[i] = [text, meta]
print(json.dumps(out))
"""


def dump_index(
    index_dir: Path, chroma_url: str | None = None, collection: str = "documents"
) -> dict[str, list]:
    """{chunk id: [text, metadata]} of an index, read by a fresh process (so nothing cached in
    this one can hide what other processes wrote)."""
    import json

    result = subprocess.run(
        [sys.executable, "-c", _DUMP_SCRIPT, str(index_dir), chroma_url or "", collection],
        capture_output=True,
        text=True,
        timeout=180,
        env=rag_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture
def index_dump():
    return dump_index


@pytest.fixture
def permission_drop_reason() -> str | None:
    """None where chmod 000 blocks our `rag` subprocesses (run with obey_permissions=True);
    else why it cannot (root without the means to drop CAP_DAC_OVERRIDE)."""
    return permissions_enforceable()


@pytest.fixture
def rag_command() -> tuple[str, dict[str, str]]:
    """(path of the `rag` script, environment for it) for tests that manage the process."""
    return str(RAG_BIN), rag_env()
