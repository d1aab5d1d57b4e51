"""Client/server mode: the same ingestion and retrieval against a real `chroma run` server
(RAG_TEST_CHROMA_URL in CI, else one started by the chroma_url fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.answer import RAG
from rag.config import Settings
from rag.ingest import index_stats, ingest, reset_index
from rag.retrieval import HybridSearcher
from rag.store import EmbeddingMismatchError, Store

pytestmark = pytest.mark.server

DOCS = {
    "ferry.txt": "Merren Ferry\n\nThe ferry to Merren leaves Valdoria at 8:00 and at 16:00 daily. "
    "The crossing takes ninety minutes and tickets cost 12 euros.",
    "harbour/lighthouse.md": "# Lighthouse\n\nThe Valdoria lighthouse was rebuilt in 1911 after "
    "a storm destroyed the old tower. It is 42 metres tall.",
    "harbour/cargo.txt": "Cargo\n\nThe harbour handles forty container ships a week, mostly "
    "grain and timber.",
}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def chunk_records(settings: Settings) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for ids, fields in Store(settings, None, None).iter_records(("metadatas",)):
        for chunk_id, metadata in zip(ids, fields["metadatas"], strict=True):
            assert chunk_id not in out
            out[chunk_id] = metadata
    return out


def test_server_ingest_reingest_replace_prune(
    server_settings: Settings, docs: Path, shared_embedder, monkeypatch
) -> None:
    settings = server_settings
    assert settings.store_mode == "server"
    first = ingest([docs], settings, embedder=shared_embedder)
    assert first.ok and first.added == 3 and first.chunks_written >= 3
    stats = index_stats(settings)
    assert stats["store"] == "server" and stats["documents"] == 3
    assert stats["sources"] == ["ferry.txt", "harbour/cargo.txt", "harbour/lighthouse.md"]
    assert not settings.index_dir.joinpath("chroma.sqlite3").exists()  # nothing stored locally
    before = chunk_records(settings)

    def forbidden(*args, **kwargs):
        raise AssertionError("an unchanged corpus must not be embedded or written")

    with monkeypatch.context() as patch:
        patch.setattr(shared_embedder, "encode", forbidden)
        patch.setattr(Store, "upsert", forbidden)
        patch.setattr(Store, "delete", forbidden)
        again = ingest([docs], settings, embedder=shared_embedder)
    assert (again.unchanged, again.chunks_written) == (3, 0)
    assert chunk_records(settings) == before

    (docs / "ferry.txt").write_text("Merren Ferry\n\nThe ferry now leaves at 9:30 only.")
    (docs / "harbour" / "cargo.txt").unlink()
    changed = ingest([docs], settings, embedder=shared_embedder)
    assert (changed.updated, changed.deleted, changed.unchanged) == (1, 1, 1)
    after = chunk_records(settings)
    assert sorted({m["source"] for m in after.values()}) == ["ferry.txt", "harbour/lighthouse.md"]
    ferry = [m for m in after.values() if m["source"] == "ferry.txt"]
    assert len({m["doc_hash"] for m in ferry}) == 1 and ferry[0]["n_chunks"] == len(ferry)
    assert not set(before) & {i for i, m in after.items() if m["source"] == "ferry.txt"}


def test_server_retrieval_and_answers(
    server_settings: Settings, docs: Path, shared_embedder
) -> None:
    assert ingest([docs], server_settings, embedder=shared_embedder).ok
    searcher = HybridSearcher(server_settings, shared_embedder)
    result = searcher.search("How tall is the lighthouse?", k=2)
    assert result.chunks[0].source == "harbour/lighthouse.md"
    assert result.best_dense > 0.4
    only = searcher.search("lighthouse", k=3, sources=["ferry.txt"])
    assert {c.source for c in only.chunks} == {"ferry.txt"}
    answer = RAG(server_settings).ask("When was the lighthouse rebuilt?")
    assert not answer.refused and "1911" in answer.answer
    assert answer.citations[0].source == "harbour/lighthouse.md"
    assert "1911" in answer.citations[0].quote


def test_server_embedding_mismatch(server_settings: Settings, docs: Path, shared_embedder) -> None:
    assert ingest([docs], server_settings, embedder=shared_embedder).ok
    store = Store(server_settings, "acme/other-model", 768)
    with pytest.raises(EmbeddingMismatchError, match="rag reset --yes"):
        store.count()
    assert reset_index(server_settings) is True
    assert index_stats(server_settings)["chunks"] == 0


def test_server_mode_cli(
    server_settings: Settings, docs: Path, shared_embedder, run_rag, tmp_path: Path
) -> None:
    """`RAG_CHROMA_URL` switches every command to the server."""
    assert ingest([docs], server_settings, embedder=shared_embedder).ok
    env = {"RAG_CHROMA_URL": server_settings.chroma_url}
    common = ["--collection", server_settings.collection, "--index", tmp_path / "local"]
    stats = run_rag("stats", "--json", *common, env=env)
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["store"] == "server" and data["documents"] == 3
    again = run_rag("ingest", docs, "--json", *common, env=env)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["unchanged"], report["chunks_written"]) == (3, 0)
    ask = run_rag(
        "ask", "How long is the ferry crossing?", "--json", "--llm", "extractive", *common, env=env
    )
    assert ask.returncode == 0, ask.stderr[-3000:]
    answer = json.loads(ask.stdout)
    assert not answer["refused"] and answer["citations"][0]["source"] == "ferry.txt"
    assert "ninety minutes" in answer["answer"]
    assert not (tmp_path / "local" / "chroma.sqlite3").exists()
    reset = run_rag("reset", "--yes", *common, env=env)
    assert reset.returncode == 0 and "deleted collection" in reset.stdout
