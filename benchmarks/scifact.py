"""Retrieval quality: SciFact (BEIR) test split, nDCG@10 and Recall@100 for BM25, dense and the
default hybrid, through the product's own evaluation code (``rag eval-retrieval``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from benchmarks.common import CACHE_DIR, SCIFACT_DIR, Timer, log, settings

QUICK_DOCS = 500
QUICK_QUERIES = 100

# Published nDCG@10 on the SciFact test split (see ../shared/bench/scifact/README.md).
ANCHORS = {
    "BM25 (BEIR paper)": 0.665,
    "Anserini BM25 flat": 0.679,
    "BM25 + cross-encoder rerank": 0.688,
    "ColBERT": 0.671,
    "all-MiniLM-L6-v2 dense (MTEB)": 0.645,
}
TARGET_HYBRID = 0.74
FLOOR_HYBRID = 0.72


def write_subset(
    source: Path, target: Path, n_docs: int, n_queries: int | None = None, split: str = "test"
) -> dict[str, int]:
    """A smaller BEIR folder: the first ``n_queries`` judged queries (all by default), every
    document judged for them, then the first other documents of the corpus up to ``n_docs``."""
    from rag.evaluation import load_beir

    dataset = load_beir(source, split)
    kept = sorted(dataset.qrels, key=lambda q: (0, int(q), "") if q.isdigit() else (1, 0, q))
    kept = kept[:n_queries]
    dataset.qrels = {q: dataset.qrels[q] for q in kept}
    dataset.queries = {q: dataset.queries[q] for q in kept}
    judged = {doc for grades in dataset.qrels.values() for doc in grades}
    keep = [doc for doc in dataset.corpus if doc in judged]
    for doc in dataset.corpus:
        if len(keep) >= n_docs:
            break
        if doc not in judged:
            keep.append(doc)
    keep_set = set(keep)
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    corpus_lines = [
        json.dumps({"_id": doc, "title": dataset.corpus[doc][0], "text": dataset.corpus[doc][1]})
        for doc in dataset.corpus
        if doc in keep_set
    ]
    _write_if_changed(target / "corpus.jsonl", "\n".join(corpus_lines) + "\n")
    query_lines = [json.dumps({"_id": q, "text": t}) for q, t in dataset.queries.items()]
    _write_if_changed(target / "queries.jsonl", "\n".join(query_lines) + "\n")
    rows = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{doc}\t{grade}"
        for q, grades in dataset.qrels.items()
        for doc, grade in grades.items()
        if doc in keep_set
    ]
    _write_if_changed(target / "qrels" / f"{split}.tsv", "\n".join(rows) + "\n")
    return {"documents": len(keep), "queries": len(dataset.queries)}


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    path.write_text(text, encoding="utf-8")


def full_index_ready(dataset_dir: Path, bench_settings: Any) -> bool:
    """Does the cache hold the whole dataset, ingested by the current pipeline (so evaluating
    it needs no embedding)? Mirrors ingest's completeness test; any doubt answers False."""
    from rag.embeddings import resolve_model
    from rag.evaluation import beir_cache_dir, beir_collection_name, load_beir
    from rag.ingest import pipeline_fingerprint, plan_files
    from rag.loaders import file_sha256
    from rag.store import Store

    try:
        dataset = load_beir(dataset_dir, "test")
        folder = beir_cache_dir(bench_settings, dataset.name)
        planned = plan_files([folder])[0] if folder.is_dir() else []
        if not planned or len(planned) < len(dataset.corpus) * 0.99:
            return False
        collection = bench_settings.with_overrides(collection=beir_collection_name(dataset.name))
        indexed = Store(collection, None, None).indexed_files()
        fingerprint = pipeline_fingerprint(
            bench_settings, resolve_model(bench_settings.embedding_model)[1]
        ).encode()
        for item in planned:
            entry = indexed.get(item.key)
            digest = hashlib.sha256(fingerprint + file_sha256(item.path).encode()).hexdigest()
            if entry is None or not entry.is_complete(digest[:32]):
                return False
        return True
    except Exception:
        return False


def run(
    quick: bool = False,
    *,
    dataset_dir: Path = SCIFACT_DIR,
    workdir: Path | None = None,
    subset_docs: int | None = None,
    subset_queries: int | None = None,
) -> dict[str, Any]:
    """Quick mode evaluates a subset, unless a full run already left the whole corpus indexed
    by the current pipeline (then the real numbers cost only the queries)."""
    from rag.evaluation import evaluate_beir

    workdir = workdir or CACHE_DIR / "scifact"
    bench_settings = settings(
        index_dir=workdir / "index", data_dir=workdir / "data", llm="extractive"
    )
    folder = dataset_dir
    subset = None
    docs = subset_docs
    if quick and docs is None and not full_index_ready(dataset_dir, bench_settings):
        docs = QUICK_DOCS
        subset_queries = subset_queries or QUICK_QUERIES
    if docs:
        folder = workdir / f"scifact-{docs}"
        subset = write_subset(dataset_dir, folder, docs, subset_queries)
        log(f"scifact: subset of {subset['documents']} documents, {subset['queries']} queries")
    log(f"scifact: evaluating {folder} (ingest is incremental: first run embeds the corpus)")
    with Timer() as timer:
        result = evaluate_beir(folder, bench_settings, split="test")
    metrics = result.metrics
    out: dict[str, Any] = {
        "ndcg@10": {mode: metrics[mode]["ndcg@10"] for mode in ("bm25", "dense", "hybrid")},
        "recall@100": {mode: metrics[mode]["recall@100"] for mode in ("bm25", "dense", "hybrid")},
        "mrr@10": {mode: metrics[mode]["mrr@10"] for mode in ("bm25", "dense", "hybrid")},
        "split": "test",
        "queries": result.n_queries,
        "documents": result.config.get("documents"),
        "chunks": result.config.get("chunks"),
        "subset": bool(docs),
        "fusion": result.config.get("fusion"),
        "seconds": round(timer.seconds, 1),
        "ingest_chunks_written": result.config.get("ingest", {}).get("chunks_written"),
        "anchors_ndcg@10": ANCHORS,
        "target_hybrid_ndcg@10": TARGET_HYBRID,
    }
    return out
