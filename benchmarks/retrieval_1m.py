"""Retrieval at a million chunks: the default hybrid search over 1,000,000 stand-in chunks
(benchmarks/synthetic.py: real SciFact text, stored vectors), and what it costs to keep it.

Measured: hybrid p50/p95 (excluding the query embedding) against the query embedding's p50
(``ratio``, target ≤ 1.0), the same searches again with BM25's top-k found by pruning and by
scoring every chunk, side by side (``bm25_pruning``), the process's peak RSS, the time to open
the store and to load the cached BM25 index, the BM25 build from the whole collection, and an
incremental change: one new document of ~20 chunks upserted into the collection, the time
until the next query is answered (which sees it), then the same for deleting it.

The collection is written once into ``benchmarks/.cache/latency-1000000`` (about an hour on
2 cores; resumable: an interrupted build continues where it stopped). Build it ahead with
``python -m benchmarks.retrieval_1m --build`` (``--chunks N`` for another size); the section
in ``make bench`` builds it when missing. Not part of ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    CACHE_DIR,
    ROOT,
    SCIFACT_DIR,
    Timer,
    isolate_environment,
    log,
    percentile,
    rss_mb,
    settings,
)
from benchmarks.synthetic import BATCH, NOISE, Texts, read_json, windows, write_collection

FULL_CHUNKS = 1_000_000
QUERIES = 300
COLLECTION = "bench-1m"
BUILD_FORMAT = 1
TARGET_RATIO = 1.0
NEW_DOC_CHUNKS = 20
UPDATE_QUERIES = 5


def index_dir_for(n_chunks: int, cache: Path) -> Path:
    return cache / f"latency-{n_chunks}"


def built(n_chunks: int, cache: Path) -> dict[str, Any] | None:
    """The build facts of a complete cached collection of ``n_chunks``, else None."""
    info = read_json(index_dir_for(n_chunks, cache) / "bench.json")
    if info and info.get("format") == BUILD_FORMAT and info.get("chunks") == n_chunks:
        return info
    return None


def build(
    n_chunks: int,
    dataset_dir: Path = SCIFACT_DIR,
    cache: Path = CACHE_DIR,
    after_batch: Callable[[int], None] | None = None,
) -> dict:
    """Write the collection (resuming a partial one), then record it as complete. Progress
    goes to the log and to ``progress.json`` beside the index (chunks, seconds, rate);
    ``after_batch`` is called with the chunks written so far."""
    info = built(n_chunks, cache)
    if info is not None:
        return info
    index_dir = index_dir_for(n_chunks, cache)
    stamp = read_json(index_dir / "progress.json") or {}
    if stamp.get("format") != BUILD_FORMAT or stamp.get("chunks") != n_chunks:
        shutil.rmtree(index_dir, ignore_errors=True)  # another size or format: start afresh
    index_dir.mkdir(parents=True, exist_ok=True)
    previous_s = float(stamp.get("write_s_total", 0.0)) if stamp.get("chunks") == n_chunks else 0.0
    begun = time.perf_counter()
    first: list[int] = []

    def progress(written: int, seconds: float) -> None:
        first.append(written)
        rate = (written - first[0] + BATCH) / max(seconds, 1e-9)
        facts = {
            "format": BUILD_FORMAT,
            "chunks": n_chunks,
            "written": written,
            "write_s_total": round(previous_s + time.perf_counter() - begun, 1),
            "chunks_per_s": round(rate, 1),
            "eta_s": round((n_chunks - written) / rate) if rate else None,
            "rss_mb": rss_mb(field="VmRSS"),
        }
        (index_dir / "progress.json").write_text(json.dumps(facts))
        log(f"retrieval_1m: {written}/{n_chunks} chunks ({rate:.0f}/s, eta {facts['eta_s']} s)")
        if after_batch is not None:
            after_batch(written)

    (index_dir / "progress.json").write_text(
        json.dumps({"format": BUILD_FORMAT, "chunks": n_chunks, "write_s_total": previous_s})
    )
    facts = write_collection(index_dir, COLLECTION, n_chunks, dataset_dir, cache, progress)
    facts.update(
        format=BUILD_FORMAT,
        write_s_total=round(previous_s + time.perf_counter() - begun, 1),
        disk_mb=round(sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file()) / 2**20),
    )
    (index_dir / "bench.json").write_text(json.dumps(facts))
    return facts


def bench_settings(n_chunks: int, cache: Path) -> Any:
    index_dir = index_dir_for(n_chunks, cache)
    return settings(index_dir=index_dir, collection=COLLECTION, llm="extractive")


def bm25_full_build(n_chunks: int, cache: Path = CACHE_DIR) -> dict[str, Any]:
    """Build the BM25 index from the whole collection, as every change did before BM25 updates
    were incremental: read every chunk (text, metadata, vector) from the store, index, save.
    Run in its own process (``--bm25-build``) so its peak memory is its own."""
    from rag.bm25 import BM25Index
    from rag.bm25_disk import BM25Cache
    from rag.embeddings import get_embedder
    from rag.retrieval import HybridSearcher

    config = bench_settings(n_chunks, cache)
    searcher = HybridSearcher(config, get_embedder(config))
    revision = searcher.store.revision()
    with Timer() as read:
        records = searcher._read_records()
    rss_records = rss_mb(field="VmRSS")
    with Timer() as index_timer:
        index = BM25Index.build(records)
    with Timer() as save:
        BM25Cache(searcher.cache_dir).save(index, revision)
    return {
        "chunks": index.n,
        "read_s": round(read.seconds, 1),
        "index_s": round(index_timer.seconds, 1),
        "save_s": round(save.seconds, 1),
        "total_s": round(read.seconds + index_timer.seconds + save.seconds, 1),
        "rss_after_read_mb": rss_records,
        "peak_rss_mb": rss_mb(),
        "vocabulary": len(index.vocab),
        "postings": len(index.base.data),
    }


def new_document(dataset_dir: Path, embedder: Any) -> tuple[list[Any], np.ndarray, list[dict]]:
    """~20 chunks of one SciFact abstract as a new file (really embedded, as ingest would)."""
    from rag.chunking import Chunk, chunk_id
    from rag.evaluation import load_beir

    corpus = load_beir(dataset_dir, "test").corpus
    doc_id = max(corpus, key=lambda d: len(corpus[d][1]))
    picked = windows({doc_id: corpus[doc_id]}, NEW_DOC_CHUNKS)
    texts = Texts({doc_id: corpus[doc_id]})
    key = f"/bench/new/{doc_id}.txt"
    chunks = []
    for i, window in enumerate(picked):
        piece = texts.text(window)
        chunks.append(
            Chunk(
                id=chunk_id(key, i, window.start, piece), text=piece, source=f"new-{doc_id}.txt",
                title=corpus[doc_id][0].strip(), page=None, start=window.start,
                end=window.end, index=i, content_hash=str(i),
            )
        )  # fmt: skip
    vectors = embedder.encode([c.text for c in chunks])
    extra = [{"path": key, "doc_hash": "new", "n_chunks": len(chunks)}] * len(chunks)
    return chunks, np.asarray(vectors, dtype=np.float32), extra


def pruning_side_by_side(searcher: Any, queries: list[str], repeats: int = 3) -> dict[str, Any]:
    """BM25's top fetch_k, and the whole hybrid search, with the top-k found by MaxScore
    pruning (``BM25Index.top``) and by scoring every chunk (what it falls back to), per query
    the best of ``repeats`` runs of each, interleaved: on a shared machine only the ratio of the
    two is meaningful."""
    from rag.bm25 import TopK
    from rag.bm25_top import top_k

    index = searcher.bm25()
    fetch_k = searcher.settings.fetch_k

    def exhaustive(query: str, k: int, mask: np.ndarray | None = None) -> TopK:
        scores, bound = index.scores(query)
        chosen = top_k(scores, k, mask)
        return TopK(chosen, scores[chosen], bound, False)

    timings: dict[str, list[float]] = {"bm25_pruned": [], "bm25_every_chunk": []}
    timings |= {"hybrid_pruned": [], "hybrid_every_chunk": []}
    pruned = 0
    for query in queries:
        searcher.embedder.encode_query(query)  # cached: the searches below exclude it
        best = dict.fromkeys(timings, float("inf"))
        for _ in range(repeats):
            for way, top in (("pruned", index.top), ("every_chunk", exhaustive)):
                with Timer() as bm25_timer:
                    found = top(query, fetch_k)
                if way == "pruned":
                    pruned += found.pruned
                index.top = top  # the searcher's index, for this search only
                try:
                    seconds = searcher.search(query).seconds
                finally:
                    del index.top
                best[f"bm25_{way}"] = min(best[f"bm25_{way}"], bm25_timer.seconds)
                best[f"hybrid_{way}"] = min(best[f"hybrid_{way}"], seconds)
        for name, seconds in best.items():
            timings[name].append(seconds * 1000)
    p50 = {name: round(percentile(values, 50), 2) for name, values in timings.items()}
    return {
        "queries": len(queries),
        "repeats": repeats,
        "pruned_share": round(pruned / max(len(queries) * repeats, 1), 3),
        **{f"{name}_p50_ms": value for name, value in p50.items()},
        "bm25_ratio": round(p50["bm25_pruned"] / p50["bm25_every_chunk"], 3),
        "hybrid_ratio": round(p50["hybrid_pruned"] / p50["hybrid_every_chunk"], 3),
    }


def incremental_change(searcher: Any, embedder: Any, dataset_dir: Path) -> dict[str, Any]:
    """Upsert one new ~20-chunk document, time the next query (which must find it), then
    delete it and time the next query again (which must not)."""
    store = searcher.store
    chunks, vectors, extra = new_document(dataset_dir, embedder)
    query = chunks[0].title or chunks[0].text[:200]
    source = chunks[0].source
    with Timer() as upsert:
        store.upsert(chunks, vectors, extra)
        store.touch()
    searcher.invalidate()
    with Timer() as after_add:
        found = searcher.search(query, k=10)
    with Timer() as ids_timer:
        count = len(store.ids())
    with Timer() as delete:
        store.delete([c.id for c in chunks])
        store.touch()
    searcher.invalidate()
    with Timer() as after_delete:
        gone = searcher.search(query, k=10)
    return {
        "new_chunks": len(chunks),
        "upsert_s": round(upsert.seconds, 3),
        "next_query_after_upsert_s": round(after_add.seconds, 3),
        "new_document_found": any(c.source == source for c in found.chunks),
        "delete_s": round(delete.seconds, 3),
        "next_query_after_delete_s": round(after_delete.seconds, 3),
        "deleted_document_gone": all(c.source != source for c in gone.chunks),
        "list_ids_s": round(ids_timer.seconds, 3),
        "ids_listed": count,
        "bm25_changed_since_base": searcher.bm25().changed,
    }


def run(
    quick: bool = False,
    *,
    dataset_dir: Path = SCIFACT_DIR,
    n_chunks: int = FULL_CHUNKS,
    n_queries: int = QUERIES,
    cache: Path = CACHE_DIR,
    partial: bool = False,
) -> dict[str, Any]:
    """Build (or finish building) the collection, then measure in this fresh process: opening
    the store (first dense query), loading the cached BM25 index, search latency, an
    incremental change; the full BM25 build runs once in a child process and is kept.

    ``partial``: measure an unfinished build as it stands (stop the build first; it resumes
    later), reported with the chunks it holds and ``complete: false``."""
    from benchmarks.retrieval_latency import measure
    from rag.bm25_disk import BM25Cache
    from rag.embeddings import get_embedder
    from rag.evaluation import load_beir
    from rag.retrieval import HybridSearcher

    index_dir = index_dir_for(n_chunks, cache)
    info = built(n_chunks, cache)
    complete = info is not None
    if info is None:
        info = read_json(index_dir / "progress.json") if partial else None
        info = info or build(n_chunks, dataset_dir, cache)
        complete = built(n_chunks, cache) is not None
    if "bm25_full_build" not in info:
        log("retrieval_1m: full BM25 build (child process)")
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.retrieval_1m", "--bm25-build",
             "--chunks", str(n_chunks)],
            cwd=ROOT, capture_output=True, text=True, check=True,
            env={**os.environ, "RAG_BENCH_CACHE": str(cache)},
        )  # fmt: skip
        info["bm25_full_build"] = json.loads(child.stdout.strip().splitlines()[-1])
        if complete:
            (index_dir / "bench.json").write_text(json.dumps(info))
    config = bench_settings(n_chunks, cache)
    embedder = get_embedder(config)
    embedder.encode_query("load the model before anything is timed")
    searcher = HybridSearcher(config, embedder)
    rss_start = rss_mb(field="VmRSS")
    with Timer() as store_timer:
        searcher.store.query(embedder.encode_query("open the store"), 10)
    rss_store = rss_mb(field="VmRSS")
    with Timer() as load_timer:
        loaded = BM25Cache(searcher.cache_dir).load()
    cache_current = loaded is not None and loaded[1] == searcher.store.revision()
    del loaded
    with Timer() as first_bm25:
        searcher.bm25()  # the cached index, or brought up to date if the store changed since
    dataset = load_beir(dataset_dir, "test")
    queries = list(dataset.queries.values())[:n_queries]
    latency = measure(searcher, embedder, queries)
    rss_serving = rss_mb(field="VmRSS")
    pruning = pruning_side_by_side(searcher, queries)
    change = incremental_change(searcher, embedder, dataset_dir)
    p50_full = info["bm25_full_build"]["total_s"]
    return {
        "chunks": int(searcher.store.count()),
        **latency,
        "bm25_pruning": pruning,
        "k": config.k,
        "fetch_k": config.fetch_k,
        "store_load_s": round(store_timer.seconds, 2),
        "bm25_load_s": round(load_timer.seconds, 2),
        "bm25_cache_was_current": cache_current,
        "bm25_first_use_s": round(first_bm25.seconds, 2),
        "bm25_build_s": p50_full,
        "bm25_full_build": info["bm25_full_build"],
        "incremental": change,
        "rebuild_vs_incremental": round(p50_full / change["next_query_after_upsert_s"], 1),
        "rss_model_mb": rss_start,
        "rss_store_loaded_mb": rss_store,
        "rss_serving_mb": rss_serving,
        "peak_rss_mb": rss_mb(),
        "index": {key: info[key] for key in info if key not in ("format", "bm25_full_build")},
        "vectors": "precomputed: each chunk reuses its SciFact passage's stored embedding, "
        f"perturbed (noise {NOISE})",
        "subset": n_chunks != FULL_CHUNKS or not complete,
        "complete": complete,
        "target_chunks": n_chunks,
        "target_ratio": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrieval_1m")
    parser.add_argument("--build", action="store_true", help="only build the cached collection")
    parser.add_argument("--bm25-build", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunks", type=int, default=FULL_CHUNKS)
    parser.add_argument(
        "--partial", action="store_true", help="measure an unfinished build as it stands"
    )
    parser.add_argument("--out", type=Path, help="also write the result JSON here")
    args = parser.parse_args(argv)
    isolate_environment()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if args.bm25_build:
        print(json.dumps(bm25_full_build(args.chunks)))
    elif args.build:
        print(json.dumps(build(args.chunks)))
    else:
        result = json.dumps(run(n_chunks=args.chunks, partial=args.partial), indent=1)
        print(result)
        if args.out:
            args.out.write_text(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
