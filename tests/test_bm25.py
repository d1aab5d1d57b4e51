"""The incremental BM25 index (rag/bm25.py): an updated index scores like a fresh build of the
same chunks (IDF exactly, scores within the documented avgdl tolerance), updates reach the
on-disk cache and survive a restart, and a corrupt segment is recomputed or rebuilt.
Real Chroma in temp dirs, real text (this repository's README, sentence by sentence)."""

from __future__ import annotations

import locale
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag import bm25, bm25_top
from rag.bm25 import BM25Index, Segment
from rag.bm25_top import top_k
from rag.chunking import Chunk, chunk_id
from rag.config import Settings
from rag.retrieval import HybridSearcher
from rag.store import open_store

ROOT = Path(__file__).resolve().parent.parent
QUERIES = (
    "How are citations checked?",
    "Chroma server HttpClient distributed deployment",
    "BM25 index cached under the index folder",
    "reader model trained on SQuAD",
    "embedding model all-MiniLM-L6-v2 offline",
)


def sentences() -> list[str]:
    """Real text: the README's and the seed document's sentences, one per chunk."""
    text = "\n\n".join(
        (ROOT / name).read_text(encoding="utf-8")
        for name in ("README.md", "seeds/china_russia_military_supply.txt")
    )
    return [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n\n", text) if len(p.strip()) > 40]


@pytest.fixture(autouse=True)
def _small_collections_update_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a 100-chunk collection take a few chunks' change in place (a few percent of avgdl
    drift, which each test's tolerance accounts for); the defaults suit big collections."""
    monkeypatch.setattr(bm25, "MAX_AVGDL_DRIFT", 0.05)


def segment(texts: list[str], tag: str = "doc") -> Segment:
    ids = [f"{tag}-{i}" for i in range(len(texts))]
    metadatas = [{"source": f"{tag}{i % 7}.txt", "title": ""} for i in range(len(texts))]
    return Segment(ids, texts, metadatas, None)


def assert_scores_match(updated: BM25Index, fresh: BM25Index) -> None:
    """Same matches; scores and bounds within the documented relative tolerance."""
    tolerance = updated.avgdl_drift() + 1e-5
    assert updated.n == fresh.n
    for query in QUERIES:
        got, got_bound = updated.scores(query)
        want, want_bound = fresh.scores(query)
        by_id = {updated.records.ids[i]: got[i] for i in np.flatnonzero(updated.alive)}
        mine = np.array([by_id[chunk_id] for chunk_id in fresh.records.ids])
        assert ((mine > 0) == (want > 0)).all(), query
        hit = want > 0
        assert np.allclose(mine[hit], want[hit], rtol=tolerance, atol=0), query
        assert got_bound == pytest.approx(want_bound, rel=tolerance)
        stems = ["citat", "chroma", "bm25", "nonexistentword"]
        assert updated.idf(stems) == pytest.approx(fresh.idf(stems), rel=1e-6)


def test_update_scores_like_a_fresh_build() -> None:
    texts = sentences()
    assert len(texts) >= 80
    cut = len(texts) - 4
    index = BM25Index.build(segment(texts[:cut]))
    added = Segment(
        [f"doc-{i}" for i in range(cut, len(texts))],
        texts[cut:],
        [{"source": "new.txt", "title": ""}] * (len(texts) - cut),
        None,
    )
    removed = {"doc-3", "doc-10"}
    updated = index.updated(added, removed)
    assert updated is not None and updated.changed == 6
    keep = [i for i in range(len(texts)) if f"doc-{i}" not in removed]
    fresh = BM25Index.build(
        Segment(
            [f"doc-{i}" for i in keep],
            [texts[i] for i in keep],
            [{"source": "x.txt", "title": ""}] * len(keep),
            None,
        )
    )
    assert_scores_match(updated, fresh)
    # A term only the new chunks have is found; a deleted chunk scores nothing.
    assert updated.records.index_of("doc-3") is None
    assert updated.records.index_of(f"doc-{cut}") is not None


def test_big_change_asks_for_a_rebuild() -> None:
    texts = sentences()
    index = BM25Index.build(segment(texts))
    too_many = int(len(texts) * bm25.MERGE_FRACTION) + 1
    assert index.updated(segment(texts[:too_many], tag="new"), set()) is None


def write_chunks(store, texts: list[str], tag: str, seed: int) -> list[str]:
    """Write chunks of ``texts`` with random unit vectors through the product's Store."""
    chunks = []
    for i, text in enumerate(texts):
        key = f"/test/{tag}.txt"
        chunks.append(
            Chunk(
                id=chunk_id(key, i, 0, text), text=text, source=f"{tag}.txt", title="",
                page=None, start=0, end=len(text), index=i, content_hash=str(i),
            )
        )  # fmt: skip
    vectors = np.random.default_rng(seed).standard_normal((len(chunks), store.embedding_dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    extra = [{"path": f"/test/{tag}.txt", "doc_hash": tag, "n_chunks": len(chunks)}] * len(chunks)
    store.upsert(chunks, vectors.astype(np.float32), extra)
    store.touch()
    return [chunk.id for chunk in chunks]


@pytest.fixture
def collection(settings: Settings, embedder) -> tuple[Settings, object, list[str]]:
    """A real Chroma collection of the README's sentences (most of them)."""
    store = open_store(settings, embedder)
    texts = sentences()
    ids = write_chunks(store, texts[:-3], "readme", seed=1)
    return settings, store, ids


def no_build(*args: object, **kwargs: object) -> None:
    raise AssertionError("BM25 index rebuilt from scratch")


def test_searcher_updates_in_place_and_the_cache_survives_a_restart(
    collection, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store, ids = collection
    searcher = HybridSearcher(settings, embedder, store)
    first = searcher.bm25()
    assert (searcher.cache_dir / "manifest.json").is_file()

    monkeypatch.setattr(BM25Index, "build", classmethod(no_build))
    new_ids = write_chunks(store, ["Tardigrades survive vacuum and radiation."], "new", seed=2)
    store.delete(ids[:2])
    store.touch()
    searcher.invalidate()
    updated = searcher.bm25()
    assert updated is not first and updated.changed == 3
    hits = searcher.search("tardigrades vacuum", mode="bm25").chunks
    assert hits and hits[0].chunk_id == new_ids[0]
    assert updated.records.index_of(ids[0]) is None
    monkeypatch.undo()
    fresh = BM25Index.build(searcher._read_records())
    assert_scores_match(updated, fresh)

    # A new process loads base + delta from disk: no rebuild, the same scores.
    monkeypatch.setattr(BM25Index, "build", classmethod(no_build))
    restarted = HybridSearcher(settings, embedder).bm25()
    assert restarted.changed == 3
    for query in QUERIES:
        assert np.array_equal(restarted.scores(query)[0], updated.scores(query)[0])


def test_corrupt_segments_are_recomputed(
    collection, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, store, ids = collection
    HybridSearcher(settings, embedder, store).bm25()
    write_chunks(store, ["Axolotls regrow limbs and parts of their hearts."], "new", seed=3)
    searcher = HybridSearcher(settings, embedder, store)
    expected = searcher.bm25()
    cache = searcher.cache_dir
    delta = next(cache.glob("delta-*"))

    # A damaged delta: recomputed from the base and the store's ids, without a rebuild.
    (delta / "postings.npz").write_bytes(b"not an npz file")
    monkeypatch.setattr(BM25Index, "build", classmethod(no_build))
    recovered = HybridSearcher(settings, embedder).bm25()
    monkeypatch.undo()
    assert recovered.changed == 1
    for query in QUERIES:
        assert np.allclose(recovered.scores(query)[0], expected.scores(query)[0])

    # A damaged base: rebuilt from the store.
    base = next(cache.glob("base-*"))
    (base / "records.json").write_text("{broken")
    rebuilt_searcher = HybridSearcher(settings, embedder)
    rebuilt = rebuilt_searcher.bm25()
    assert rebuilt.changed == 0 and rebuilt.n == len(ids) + 1
    hits = rebuilt_searcher.search("axolotls regrow limbs", mode="bm25").chunks
    assert hits and hits[0].source == "new.txt"


@pytest.mark.server
def test_two_clients_of_a_chroma_server_catch_up_incrementally(
    server_settings: Settings, embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a real `chroma run`: a second client (its own local BM25 cache) sees another
    client's change by listing the server's ids, without rebuilding."""
    writer_store = open_store(server_settings, embedder)
    ids = write_chunks(writer_store, sentences()[:-3], "readme", seed=4)
    reader_settings = server_settings.with_overrides(index_dir=tmp_path / "reader-index")
    reader = HybridSearcher(reader_settings, embedder)
    assert reader.bm25().n == len(ids)

    monkeypatch.setattr(BM25Index, "build", classmethod(no_build))
    new_ids = write_chunks(writer_store, ["Narwhal tusks are elongated teeth."], "new", seed=5)
    writer_store.delete(ids[:1])
    writer_store.touch()
    reader.invalidate()
    hits = reader.search("narwhal tusks", mode="bm25").chunks
    assert hits and hits[0].chunk_id == new_ids[0]
    assert reader.bm25().changed == 2 and reader.bm25().records.index_of(ids[0]) is None


# Top-k by pruning (rag/bm25_top.py) --------------------------------------------------------

# Vendored text that no session edits (this repository's own README and docs change, and with
# them how often pruning wins, which a test should not depend on).
PROSE = (
    "evals/corpora/readmes/validation/requests.md",
    "evals/corpora/readmes/validation/fastapi.md",
    "evals/corpora/readmes/validation/typer.md",
    "seeds/china_russia_military_supply.txt",
    "evals/corpora/handbook/staff_handbook.md",
    "evals/corpora/handbook/fleet_and_maintenance.md",
    "evals/corpora/readmes/test/httpx.md",
)
HELD_OUT = "evals/corpora/handbook/customer_service_procedures.txt"  # added later: a delta


def windows(name: str) -> list[str]:
    """Real text as overlapping chunks: a file's sentences, and windows of 2 to 4 of them."""
    text = (ROOT / name).read_text(encoding="utf-8")
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n\n", text) if len(p.strip()) > 20]
    return [" ".join(parts[i : i + w]) for w in (1, 2, 3, 4) for i in range(len(parts) - w + 1)]


@pytest.fixture(scope="module")
def updated_index() -> BM25Index:
    """A base of the repository's prose (one file's chunks twice: equal scores, ranked by
    position), then a delta: a held-out file's chunks (with words the base never saw) and a
    few base chunks re-added, and every 17th base chunk deleted."""
    texts = [text for name in (*PROSE, PROSE[3]) for text in windows(name)]
    index = BM25Index.build(segment(texts))
    added = windows(HELD_OUT)[:60]
    replaced = [f"doc-{i}" for i in range(5, 40, 7)]
    delta = Segment(
        [f"new-{i}" for i in range(len(added))] + replaced,
        added + [texts[int(i.split("-")[1])] for i in replaced],
        [{"source": "new.txt", "title": ""}] * (len(added) + len(replaced)),
        None,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bm25, "MAX_AVGDL_DRIFT", 1.0)
        patch.setattr(bm25, "MERGE_FRACTION", 0.5)
        updated = index.updated(delta, {f"doc-{i}" for i in range(0, len(texts), 17)})
    assert updated is not None and updated.dead.size and len(updated.delta.records)
    return updated


def top_queries(index: BM25Index) -> list[str]:
    """Chunk texts, random bags of the index's words (common ones most likely), the commonest
    and the rarest words, repeated words, words only the delta has, words only deleted chunks
    had, unseen and stopword-only queries."""
    rng = np.random.default_rng(13)
    stems = np.array(sorted(index.vocab, key=index.vocab.__getitem__))
    df = index.df.astype(np.float64)
    common = stems[np.argsort(-df)[:40]]
    rare = stems[df == 1]
    delta_only = stems[index.base.vocab_size :]
    gone = stems[(index.df == 0)[: len(stems)]]
    queries = list(index.records.texts[:: max(1, len(index.records.texts) // 40)])
    for n in (1, 2, 3, 5, 8, 13):
        for _ in range(6):
            queries.append(" ".join(rng.choice(stems, n, p=df / df.sum())))
            queries.append(" ".join(rng.choice(stems, n)))
    queries += [" ".join(common[:n]) for n in (1, 2, 4, 8, 16)]
    queries += [" ".join(rng.choice(rare, 3)), " ".join(rare[:10]), f"{rare[0]} {common[0]}"]
    queries += [f"{common[0]} {common[0]} {common[3]}", f"{rare[1]} {rare[1]} {common[1]}"]
    queries += [" ".join(delta_only[:5]), f"{delta_only[0]} {common[2]}", " ".join(gone[:4])]
    queries += ["qwxzyv blorptastic", "the of and", ""]
    return queries


def assert_top_is_exhaustive(index: BM25Index, query: str, k: int, mask=None) -> bool:
    """index.top equals the exhaustive top k (same chunks, order and bit-equal scores, ties by
    position) and bound; returns whether pruning found it."""
    got = index.top(query, k, mask)
    scores, bound = index.scores(query)
    want = top_k(scores, k, mask)
    kept = scores if mask is None else np.where(mask, scores, 0)
    order = np.lexsort((np.arange(len(kept)), -kept))
    assert np.array_equal(want, order[: len(want)]) and (kept[want] > 0).all()
    assert len(want) == min(k, int((kept > 0).sum()))
    assert np.array_equal(got.indices, want), (query, k)
    assert np.array_equal(got.scores, scores[want]), (query, k)
    assert got.bound == bound
    return got.pruned


@pytest.mark.parametrize(
    "tuning",
    [
        {},
        {"PROBE_FULL": 1, "POSTING_COST": 1e-9},  # prune whenever it can: never falls back
        {"PROBE_FULL": 1, "POSTING_COST": 1e-9, "SPREAD": 0},  # lookups by binary search only
        {"PROBE_FULL": 1, "POSTING_COST": 1e-9, "SPREAD": 1e9},  # ... by spreading only
    ],
    ids=["defaults", "eager", "eager-search", "eager-spread"],
)
def test_pruned_top_k_equals_the_exhaustive_one(
    updated_index: BM25Index, tuning: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in tuning.items():
        monkeypatch.setattr(bm25_top, name, value)
    index = updated_index
    sources = index.records.sources
    masks = [None, np.isin(sources, ["doc1.txt", "doc4.txt", "new.txt"]), sources == "none"]
    pruned = 0
    queries = top_queries(index)
    for i, query in enumerate(queries):
        for k in (1, 10, 100_000):
            pruned += assert_top_is_exhaustive(index, query, k, masks[i % 3 if k > 1 else 0])
    if tuning:
        assert pruned >= 2 * len(queries)  # nearly every query, at every k


def test_typical_queries_take_the_pruned_path(updated_index: BM25Index) -> None:
    """With the default tuning, chunk-like queries for a few results are mostly answered by
    pruning (this fails if pruning silently always gives up)."""
    index = updated_index
    queries = index.records.texts[::23]
    pruned = sum(assert_top_is_exhaustive(index, query, 5) for query in queries)
    assert pruned >= 0.5 * len(queries)


def test_pruned_top_k_in_threads_matches(updated_index: BM25Index) -> None:
    """Each thread sums in its own scratch array: concurrent searches don't mix."""
    from concurrent.futures import ThreadPoolExecutor

    queries = top_queries(updated_index) * 3
    alone = [updated_index.top(query, 10).indices for query in queries]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda query: updated_index.top(query, 10).indices, queries))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))


def test_unsorted_postings_fall_back_to_scoring_every_chunk(updated_index: BM25Index) -> None:
    assert bm25_top.rows_sorted(np.array([3, 5, 9, 0, 2, 1]), np.array([0, 3, 5, 6]))
    assert not bm25_top.rows_sorted(np.array([3, 5, 9, 2, 0, 1]), np.array([0, 3, 5, 6]))
    assert not bm25_top.rows_sorted(np.array([3, 3]), np.array([0, 2]))
    index = BM25Index(updated_index.base, updated_index.delta)
    index._sorted = False
    query = updated_index.records.texts[7]
    assert not index.top(query, 5).pruned
    assert np.array_equal(index.top(query, 5).indices, updated_index.top(query, 5).indices)


@pytest.fixture
def c_locale() -> Iterator[None]:
    """The C locale (ASCII) for text files opened without an encoding, as OpenVINO sets it for
    a moment while it loads, when another thread may be writing the keyword index."""
    before = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
    except locale.Error:
        pytest.skip("no C locale")
    if locale.getpreferredencoding(False).lower().replace("-", "") == "utf8":
        pytest.skip("this Python opens files as UTF-8 whatever the locale (UTF-8 mode)")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_keyword_index_files_do_not_depend_on_the_locale(
    settings: Settings, embedder, c_locale: None
) -> None:
    """Non-ASCII chunks are written to and read back from the keyword index's files under the
    C locale (a cold `rag ask` crashed so when OpenVINO's load overlapped the index's write)."""
    store = open_store(settings, embedder)
    (new_id,) = write_chunks(store, ["Café crème costs €3 at the Zürich kiosk."], "menu", seed=3)
    searcher = HybridSearcher(settings, embedder, store)
    hits = searcher.search("Zürich café", mode="bm25").chunks
    assert hits and hits[0].chunk_id == new_id
    restarted = HybridSearcher(settings, embedder).search("Zürich café", mode="bm25").chunks
    assert restarted and restarted[0].chunk_id == new_id
