"""Hybrid retrieval on a small real corpus: dense-only, BM25-only and fused rankings, the BM25
cache, source filters and the LangChain retriever interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings, load_settings
from rag.ingest import ingest
from rag.retrieval import BM25Index, HybridRetriever, HybridSearcher, fuse

CORPUS = {
    "volcano.txt": (
        "Mount Etna is an active stratovolcano on the east coast of Sicily. Its eruptions send "
        "lava flows down the slopes and ash clouds that close Catania airport."
    ),
    "baking.md": (
        "# Sourdough\n\nA sourdough loaf rises with wild yeast kept in a starter. Feed the "
        "starter flour and water, let the dough ferment overnight and bake it in a hot oven."
    ),
    "firmware.txt": (
        "Release notes for controller firmware QX-7731. The QX-7731 build fixes the watchdog "
        "reset loop and raises the default baud rate to 115200."
    ),
    "cycling.txt": (
        "Riding a bicycle to work every day improves cardiovascular fitness. Commuters who "
        "cycle report less stress than those who drive."
    ),
    "tides.txt": (
        "Ocean tides are caused mainly by the gravitational pull of the Moon and, to a lesser "
        "degree, the Sun. Spring tides happen at full and new moon."
    ),
}


@pytest.fixture(scope="module")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("corpus")
    docs = root / "docs"
    docs.mkdir()
    for name, text in CORPUS.items():
        (docs / name).write_text(text, encoding="utf-8")
    settings = load_settings(index_dir=root / "index", llm="extractive", k=3)
    report = ingest([docs], settings)
    assert report.ok and report.added == len(CORPUS)
    return settings


@pytest.fixture(scope="module")
def searcher(corpus_settings: Settings) -> HybridSearcher:
    return HybridSearcher(corpus_settings)


def top_source(searcher: HybridSearcher, query: str, mode: str = "hybrid") -> str:
    return searcher.search(query, k=3, mode=mode).chunks[0].source  # type: ignore[arg-type]


def test_dense_finds_paraphrase_without_shared_words(searcher: HybridSearcher) -> None:
    # No content word in common with tides.txt: only the embedding can match it.
    query = "why does the sea level rise and fall twice a day"
    assert top_source(searcher, query, "dense") == "tides.txt"
    assert searcher.search(query, mode="bm25").chunks == [] or (
        top_source(searcher, query, "bm25") != "tides.txt"
    )


def test_bm25_finds_rare_exact_token(searcher: HybridSearcher) -> None:
    assert top_source(searcher, "QX-7731", "bm25") == "firmware.txt"


def test_bm25_stems_words(searcher: HybridSearcher) -> None:
    # "erupting" matches "eruptions" through the English stemmer.
    assert top_source(searcher, "erupting", "bm25") == "volcano.txt"


def test_fused_ranking_gets_both_kinds_right(searcher: HybridSearcher) -> None:
    assert top_source(searcher, "QX-7731 watchdog") == "firmware.txt"
    assert top_source(searcher, "why does the sea level rise and fall twice a day") == "tides.txt"
    result = searcher.search("bread fermentation with wild yeast", k=3)
    assert result.chunks[0].source == "baking.md"
    assert result.chunks[0].dense_score is not None and result.chunks[0].bm25_score is not None
    scores = [chunk.score for chunk in result.chunks]
    assert scores == sorted(scores, reverse=True)


def test_relevance_signal_separates_on_and_off_topic(searcher: HybridSearcher) -> None:
    on_topic = searcher.search("What causes tides in the ocean?")
    off_topic = searcher.search("Who won the 1998 football world cup final?")
    assert on_topic.best_dense > 0.5
    assert off_topic.best_dense < on_topic.best_dense - 0.25


def test_source_filter(searcher: HybridSearcher) -> None:
    result = searcher.search("QX-7731 firmware", k=3, sources=["cycling.txt", "tides.txt"])
    assert result.chunks
    assert {chunk.source for chunk in result.chunks} <= {"cycling.txt", "tides.txt"}


def test_chunks_carry_exact_offsets(searcher: HybridSearcher, corpus_settings: Settings) -> None:
    for chunk in searcher.search("sourdough starter", k=5).chunks:
        assert CORPUS[chunk.source][chunk.start : chunk.end] == chunk.text


def test_langchain_retriever_interface(searcher: HybridSearcher) -> None:
    retriever = HybridRetriever(searcher=searcher, k=2)
    documents = retriever.invoke("Sicily volcano ash")
    assert 1 <= len(documents) <= 2
    assert documents[0].metadata["source"] == "volcano.txt"
    assert documents[0].id == documents[0].metadata["chunk_id"]
    assert documents[0].metadata["score"] >= documents[-1].metadata["score"]


def test_bm25_cache_is_reused_and_refreshed(
    corpus_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = corpus_settings.with_overrides(index_dir=tmp_path / "index")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Alpacas are domesticated South American camelids.")
    ingest([docs], settings)
    first = HybridSearcher(settings)
    assert first.search("alpaca", mode="bm25").chunks[0].source == "a.txt"
    assert (first.cache_dir / "manifest.json").exists()

    # A second process-like searcher loads the cached index instead of rebuilding it.
    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("BM25 index rebuilt although the collection did not change")

    monkeypatch.setattr(BM25Index, "build", classmethod(no_build))
    second = HybridSearcher(settings)
    assert second.search("alpaca", mode="bm25").chunks[0].source == "a.txt"
    monkeypatch.undo()

    # A change to the collection (new revision) makes the next search bring it up to date
    # (here by a rebuild: one chunk is too big a change to a one-chunk index; updates in
    # place are tested in tests/test_bm25.py).
    (docs / "b.txt").write_text("Kestrels hover over grassland while hunting voles.")
    ingest([docs], settings)
    second.invalidate()
    assert second.search("kestrel voles", mode="bm25").chunks[0].source == "b.txt"


def test_empty_index_returns_nothing(settings: Settings) -> None:
    result = HybridSearcher(settings).search("anything at all")
    assert result.chunks == []
    assert result.best_dense == 0.0


def test_fuse_rrf_and_weighted() -> None:
    dense = {"a": 0.9, "b": 0.5, "c": 0.1}
    bm25 = {"c": 12.0, "d": 3.0}
    rrf = fuse(dense, bm25, "rrf", 1.0, 1.0, rrf_k=60)
    assert rrf["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert rrf["a"] == pytest.approx(1 / 61)
    assert max(rrf, key=rrf.__getitem__) == "c"
    weighted = fuse(dense, bm25, "weighted", 0.7, 0.3)
    assert weighted["a"] == pytest.approx(0.7 * 0.9)  # no BM25 match
    assert weighted["c"] == pytest.approx(0.7 * 0.1 + 0.3)  # best BM25
    assert weighted["d"] == pytest.approx(0.7 * 0.1 + 0.3 * 0.25)  # no cosine: the lowest known
    assert set(weighted) == {"a", "b", "c", "d"}


def test_top_over_a_large_array_matches_a_full_sort() -> None:
    from rag.bm25_top import TOP_SAMPLE, top_k

    rng = np.random.default_rng(7)
    n = 5 * TOP_SAMPLE
    for share in (0.001, 0.05, 0.6):
        scores = np.zeros(n, dtype=np.float32)
        hit = rng.choice(n, int(n * share), replace=False)
        # Few distinct values: many ties, which rank by position.
        scores[hit] = rng.integers(1, 50, len(hit)).astype(np.float32) / 7
        for k in (1, 100, 2000):
            got = top_k(scores, k)
            want = np.argsort(-scores, kind="stable")[: min(k, len(hit))]
            assert np.array_equal(got, want)


def test_searches_from_many_threads_match_one_at_a_time(searcher: HybridSearcher) -> None:
    """Concurrent searches (the UI serves several users at once) get exactly what they get one
    at a time."""
    from concurrent.futures import ThreadPoolExecutor

    queries = [
        "what causes tides",
        "QX-7731 baud rate",
        "sourdough starter",
        "lava from Etna",
        "cycling to work",
    ] * 4

    def ranking(query: str) -> list[tuple[str, float]]:
        return [(c.chunk_id, round(c.score, 6)) for c in searcher.search(query, k=3).chunks]

    alone = [ranking(query) for query in queries]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(ranking, queries))
    assert together == alone
