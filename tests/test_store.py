"""The Chroma store: compatibility checks, paging, revision, reset, LangChain view."""

from __future__ import annotations

from pathlib import Path

import chromadb
import numpy as np
import pytest

from rag import store as store_module
from rag.config import Settings
from rag.ingest import index_stats, ingest, reset_index
from rag.store import EmbeddingMismatchError, Store, StoreUnavailableError, open_store

TEXT = (
    "Merren Island has a population of 4,200 people. The island exports wool and cheese. "
    "A lighthouse stands on its northern cape. Ferries arrive twice a day from Valdoria."
)


def make_foreign_collection(settings: Settings, dim: int, metadata: dict | None) -> None:
    """A collection written by something else (another model, or a plain Chroma user)."""
    client = chromadb.PersistentClient(
        path=str(settings.index_dir),
        settings=chromadb.config.Settings(anonymized_telemetry=False, allow_reset=True),
    )
    collection = client.get_or_create_collection(
        settings.collection, embedding_function=None, metadata=metadata
    )
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, dim)).astype(np.float32)
    collection.add(
        ids=["a", "b", "c"],
        embeddings=vectors,
        documents=["one", "two", "three"],
        metadatas=[{"source": "x.txt", "path": "/x.txt"}] * 3,
    )


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "merren.txt").write_text(TEXT)
    return folder


def test_mismatched_model_name_is_explained(settings, embedder, docs) -> None:
    make_foreign_collection(
        settings, embedder.dimension, {"embedding_model": "acme/other-model", "embedding_dim": 384}
    )
    with pytest.raises(EmbeddingMismatchError) as caught:
        ingest([docs], settings, embedder=embedder)
    message = str(caught.value)
    assert "acme/other-model" in message and embedder.name in message
    assert "rag reset --yes" in message and "RAG_EMBEDDING_MODEL=acme/other-model" in message
    assert "\n" not in message
    assert Store(settings, None, None).count() == 3  # nothing mixed in, nothing lost


def test_mismatched_dimension_is_explained(settings, embedder, docs) -> None:
    make_foreign_collection(settings, 768, {"embedding_model": embedder.name, "embedding_dim": 768})
    with pytest.raises(EmbeddingMismatchError, match="768 dimensions"):
        ingest([docs], settings, embedder=embedder)


def test_unlabelled_collection_with_other_dimension_is_explained(settings, embedder, docs) -> None:
    """A collection without our metadata (e.g. made by another tool) whose vectors have another
    size must be refused with our message, not a Chroma error in the middle of a write."""
    make_foreign_collection(settings, 8, None)
    with pytest.raises(EmbeddingMismatchError) as caught:
        ingest([docs], settings, embedder=embedder)
    assert "8 dimensions" in str(caught.value) and "rag reset --yes" in str(caught.value)
    assert Store(settings, None, None).count() == 3


def test_unlabelled_collection_with_same_dimension_is_accepted(settings, embedder, docs) -> None:
    make_foreign_collection(settings, embedder.dimension, None)
    report = ingest([docs], settings, embedder=embedder)
    assert report.ok and report.added == 1
    metadata = Store(settings, None, None).metadata()
    assert metadata["embedding_model"] == embedder.name  # labelled from now on
    assert metadata["embedding_dim"] == embedder.dimension
    assert metadata["embedding_precision"] == embedder.precision
    # Chroma's default space there is l2: scores must still be cosine similarities
    store = open_store(settings, embedder)
    question = "What does Merren Island export?"
    hits = dict(store.query(embedder.encode_query(question), 10))
    ours = [i for i, (_, m) in store.get(list(hits)).items() if m["source"] == "merren.txt"]
    expected = float(embedder.encode([TEXT])[0] @ embedder.encode_query(question))
    assert hits[ours[0]] == pytest.approx(expected, abs=1e-3)


def test_mismatch_detected_at_question_time(settings, embedder) -> None:
    from rag.retrieval import HybridSearcher

    make_foreign_collection(
        settings, embedder.dimension, {"embedding_model": "acme/other-model", "embedding_dim": 384}
    )
    searcher = HybridSearcher(settings, embedder)
    with pytest.raises(EmbeddingMismatchError):
        searcher.search("population of Merren")


def test_revision_changes_only_when_content_changes(settings, embedder, docs) -> None:
    store = Store(settings, None, None)
    assert store.revision() == "absent"
    ingest([docs], settings, embedder=embedder)
    first = store.revision()
    ingest([docs], settings, embedder=embedder)
    assert store.revision() == first
    (docs / "merren.txt").write_text(TEXT + " A new pier opened in May.")
    ingest([docs], settings, embedder=embedder)
    assert store.revision() != first


def test_paging_reads_every_record(settings, embedder, docs, monkeypatch) -> None:
    for n in range(6):
        (docs / f"extra{n}.txt").write_text(f"Extra document number {n}. " + TEXT)
    ingest([docs], settings, embedder=embedder)
    total = Store(settings, None, None).count()
    monkeypatch.setattr(store_module, "PAGE_SIZE", 2)
    pages = list(Store(settings, None, None).iter_records(("metadatas",)))
    assert total >= 7 and len(pages) == (total + 1) // 2
    ids = [i for page_ids, _ in pages for i in page_ids]
    assert len(ids) == len(set(ids)) == total
    files = Store(settings, None, None).indexed_files()
    assert len(files) == 7 and all(f.n_chunks == len(f.chunk_ids) for f in files.values())


def test_query_get_and_filters(settings, embedder, docs) -> None:
    (docs / "other.txt").write_text("Completely unrelated text about volcanoes and lava.")
    ingest([docs], settings, embedder=embedder)
    store = open_store(settings, embedder)
    vector = embedder.encode_query("How many people live on Merren Island?")
    hits = store.query(vector, 10)
    assert [store.get([hits[0][0]])[hits[0][0]][1]["source"]] == ["merren.txt"]
    assert all(-1.0 <= score <= 1.0 for _, score in hits)
    only = store.query(vector, 10, where={"source": "other.txt"})
    assert {store.get([i])[i][1]["source"] for i, _ in only} == {"other.txt"}
    assert store.get(["no-such-id"]) == {}
    assert store.get([]) == {}


def test_stats_reset_and_empty_index(settings, embedder, docs) -> None:
    empty = index_stats(settings)
    assert empty == {
        "collection": "documents",
        "documents": 0,
        "chunks": 0,
        "sources": [],
        "embedding_model": embedder.name,
        "store": "embedded",
    }
    ingest([docs], settings, embedder=embedder)
    assert index_stats(settings)["sources"] == ["merren.txt"]
    assert reset_index(settings) is True
    assert reset_index(settings) is False
    assert index_stats(settings)["chunks"] == 0
    report = ingest([docs], settings, embedder=embedder)  # usable again after a reset
    assert report.added == 1


def test_langchain_vectorstore_view(settings, embedder, docs) -> None:
    from rag.store import as_langchain_vectorstore

    ingest([docs], settings, embedder=embedder)
    vectorstore = as_langchain_vectorstore(settings, embedder)
    results = vectorstore.similarity_search("Which island exports wool?", k=1)
    assert results and "wool" in results[0].page_content
    assert results[0].metadata["source"] == "merren.txt"


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    from rag.config import load_settings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    settings = load_settings(index_dir=tmp_path / "i", chroma_url=url)
    with pytest.raises(StoreUnavailableError) as caught:
        Store(settings, None, None).count()
    assert url in str(caught.value) and "chroma run" in str(caught.value)
