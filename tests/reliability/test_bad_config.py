"""Issue 7, bad configuration: unknown RAG_LLM, missing GGUF, unreachable RAG_CHROMA_URL, and an
index built with another embedding model. Each: one clear line, exit 1, no traceback, and the
index left as it was."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rag.config import load_settings
from rag.embeddings import packaged_model_dir
from rag.ingest import index_stats, ingest
from rag.llm import LLMConfigError
from rag.store import EmbeddingMismatchError, StoreUnavailableError


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A folder with docs/ and an index of them built with the packaged model."""
    root = tmp_path_factory.mktemp("config")
    (root / "docs").mkdir()
    (root / "docs" / "ferry.txt").write_text(
        "The ferry to Merren leaves Valdoria at 8:00 and at 16:00 every day."
    )
    return root


@pytest.fixture
def index(built: Path, shared_embedder) -> Path:
    settings = load_settings(index_dir=built / "index")
    if index_stats(settings)["chunks"] == 0:
        assert ingest([built / "docs"], settings, embedder=shared_embedder).ok
    return built / "index"


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # bound then closed: nothing listens there


@pytest.mark.parametrize(
    ("llm", "needle", "how"),
    [
        ("gpt-17", "unknown RAG_LLM", "env"),
        ("gguf:/nonexistent/model.gguf", "GGUF file not found", "flag"),
    ],
)
def test_bad_llm_setting(
    llm: str, needle: str, how: str, index: Path, run_rag, clean_failure
) -> None:
    question = "When does the ferry leave?"
    if how == "env":
        result = run_rag("ask", question, "--index", index, env={"RAG_LLM": llm})
    else:
        result = run_rag("ask", question, "--index", index, "--llm", llm)
    clean_failure(result, needle, llm)
    if needle == "unknown RAG_LLM":
        assert "local, extractive, gguf:" in result.stderr  # says what is accepted


def test_bad_llm_setting_api(index: Path, tmp_path: Path) -> None:
    from rag.answer import RAG
    from rag.config import RagError

    with pytest.raises(LLMConfigError, match="unknown RAG_LLM"):
        RAG(load_settings(index_dir=index, llm="nonsense"))
    for spec, needle in (
        ("gguf:", "GGUF file not found"),
        ("gguf:/missing/model.gguf", "GGUF file not found"),
        ("ollama:", "name the model"),
        ("openai", "name the model"),
    ):
        with pytest.raises(LLMConfigError, match=needle):
            RAG(load_settings(index_dir=index, llm=spec))
    bot = RAG(load_settings(index_dir=index, llm="extractive"))
    with pytest.raises(LLMConfigError, match="GGUF file not found"):
        bot.ask("When does the ferry leave?", llm="gguf:/missing.gguf")
    not_a_model = tmp_path / "fake.gguf"
    not_a_model.write_bytes(b"GGUF but not really" * 10)
    with pytest.raises(RagError) as caught:
        bot.ask("When does the ferry leave?", llm=f"gguf:{not_a_model}")
    assert "fake.gguf" in str(caught.value)


@pytest.mark.parametrize(
    "command",
    [
        ["stats", "--json"],
        ["ingest", "{docs}", "--json"],
        ["ask", "When does the ferry leave?", "--llm", "extractive"],
        ["reset", "--yes"],
    ],
)
def test_unreachable_chroma_url(
    command: list[str], built: Path, dead_url: str, run_rag, clean_failure
) -> None:
    args = [part.replace("{docs}", str(built / "docs")) for part in command]
    result = run_rag(*args, env={"RAG_CHROMA_URL": dead_url}, timeout=120)
    clean_failure(result, dead_url, "chroma run", "RAG_CHROMA_URL")
    assert result.stdout == ""


def test_unreachable_chroma_url_api(built: Path, dead_url: str, shared_embedder) -> None:
    settings = load_settings(index_dir=built / "other", chroma_url=dead_url)
    with pytest.raises(StoreUnavailableError, match="cannot reach the Chroma server"):
        ingest([built / "docs"], settings, embedder=shared_embedder)
    with pytest.raises(StoreUnavailableError):
        index_stats(settings)


def test_malformed_chroma_url(run_rag, clean_failure) -> None:
    clean_failure(run_rag("stats", env={"RAG_CHROMA_URL": "localhost:8000"}), "RAG_CHROMA_URL")


def other_model_folder(tmp_path: Path) -> Path:
    """The packaged model under another name: a folder of links to its files (no copy)."""
    source = packaged_model_dir()
    target = tmp_path / "other-minilm"
    for path in source.rglob("*"):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.symlink_to(path)
    return target


def test_index_built_with_another_embedding_model(
    index: Path, built: Path, tmp_path: Path, run_rag, clean_failure, index_dump
) -> None:
    other = other_model_folder(tmp_path)
    before = index_dump(index)
    env = {"RAG_EMBEDDING_MODEL": str(other)}
    for args in (
        ["ingest", built / "docs", "--index", index, "--json"],
        ["ask", "When does the ferry leave?", "--index", index, "--llm", "extractive"],
    ):
        result = run_rag(*args, env=env)
        clean_failure(
            result,
            "other-minilm",
            "sentence-transformers/all-MiniLM-L6-v2",
            "cannot be mixed",
            "rag reset --yes",
            "RAG_EMBEDDING_MODEL=sentence-transformers/all-MiniLM-L6-v2",
        )
    assert index_dump(index) == before  # nothing mixed in, nothing lost
    # the advice works: naming the model the index was built with is accepted
    fixed = run_rag(
        "ingest", built / "docs", "--index", index, "--json",
        env={"RAG_EMBEDDING_MODEL": "sentence-transformers/all-MiniLM-L6-v2"},
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    assert '"unchanged": 1' in fixed.stdout


def test_index_from_another_model_api(index: Path, tmp_path: Path) -> None:
    from rag.answer import RAG

    settings = load_settings(
        index_dir=index, embedding_model=str(other_model_folder(tmp_path)), llm="extractive"
    )
    with pytest.raises(EmbeddingMismatchError, match="rag reset --yes"):
        RAG(settings).ask("When does the ferry leave?")
