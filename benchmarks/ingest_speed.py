"""Ingest speed: a full ingest (discover, load, chunk, hash, embed, write to Chroma) vs. a bare
``encode`` of exactly the same chunk texts by the product's encoder (the configured backend,
ONNX Runtime by default) at the product's batch size, interleaved and repeated (medians); then
a re-ingest of the unchanged corpus."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import CACHE_DIR, SCIFACT_DIR, Timer, log, median, settings

FULL_DOCS, FULL_REPEATS = 600, 3
QUICK_DOCS, QUICK_REPEATS = 100, 2
TARGET_RATIO = 1.15
TARGET_REINGEST_RATIO = 0.03


def write_corpus(dataset_dir: Path, folder: Path, n_docs: int) -> int:
    """The first ``n_docs`` SciFact documents as text files (as ``rag eval-retrieval`` writes
    them: title, blank line, abstract)."""
    from rag.evaluation import BeirDataset, load_beir, write_corpus_files

    dataset = load_beir(dataset_dir, "test")
    corpus = dict(list(dataset.corpus.items())[:n_docs])
    files = write_corpus_files(BeirDataset(dataset.name, corpus, {}, {}), folder)
    return len(files)


def product_chunks(folder: Path, bench_settings: Any) -> list[str]:
    """The texts a fresh ingest of ``folder`` embeds, in its order (same planning, loading and
    chunking code as :func:`rag.ingest.ingest`)."""
    from rag.chunking import chunk_document
    from rag.ingest import plan_files
    from rag.loaders import load_file

    planned, _, _, _ = plan_files([folder])
    max_bytes = int(bench_settings.max_file_mb * 1e6)
    texts: list[str] = []
    for item in planned:
        document = load_file(item.path, max_bytes)
        chunks = chunk_document(
            document, item.source, item.key, bench_settings.chunk_size, bench_settings.chunk_overlap
        )
        texts.extend(chunk.search_text for chunk in chunks)
    return texts


def run(
    quick: bool = False,
    *,
    dataset_dir: Path = SCIFACT_DIR,
    workdir: Path | None = None,
    n_docs: int | None = None,
    repeats: int | None = None,
) -> dict[str, Any]:
    from rag.embeddings import get_embedder
    from rag.ingest import ingest

    workdir = workdir or CACHE_DIR / "ingest"
    n_docs = n_docs or (QUICK_DOCS if quick else FULL_DOCS)
    repeats = repeats or (QUICK_REPEATS if quick else FULL_REPEATS)
    corpus = workdir / f"corpus-{n_docs}"
    files = write_corpus(dataset_dir, corpus, n_docs)
    base = settings(index_dir=workdir / "index-probe", llm="extractive")
    embedder = get_embedder(base)
    texts = product_chunks(corpus, base)
    batch = base.embedding_batch_size
    log(f"ingest: {files} files, {len(texts)} chunks, batch size {batch}, {repeats} repeats")

    def bare_encode() -> float:
        with Timer() as timer:
            embedder.encode(texts, batch_size=batch)  # the product's encoder, nothing else
        return timer.seconds

    runs = workdir / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    made: list[Path] = []

    def full_ingest(rep: int) -> tuple[float, float, int, int]:
        index_dir = runs / f"index-{rep}-{time.monotonic_ns()}"
        made.append(index_dir)
        run_settings = settings(index_dir=index_dir, llm="extractive")
        with Timer() as cold:
            report = ingest([corpus], run_settings, embedder=embedder)
        if not report.ok:
            raise RuntimeError(f"ingest failed: {report.failed[:3]}")
        with Timer() as again:
            second = ingest([corpus], run_settings, embedder=embedder)
        return cold.seconds, again.seconds, report.chunks_written, second.chunks_written

    # Warm up both paths (first torch calls, Chroma's first client) outside the timings.
    embedder.encode(texts[:64], batch_size=batch)
    warm_dir = workdir / "warm"
    shutil.rmtree(warm_dir, ignore_errors=True)
    write_corpus(dataset_dir, warm_dir, 20)
    ingest([warm_dir], settings(index_dir=runs / "warm-index", llm="extractive"), embedder=embedder)

    encode_s: list[float] = []
    ingest_s: list[float] = []
    reingest_s: list[float] = []
    written: list[int] = []
    rewritten: list[int] = []
    for rep in range(repeats):
        order = ("encode", "ingest") if rep % 2 == 0 else ("ingest", "encode")
        for step in order:
            if step == "encode":
                encode_s.append(bare_encode())
                log(f"ingest: rep {rep + 1} bare encode {encode_s[-1]:.1f} s")
            else:
                cold, again, n_written, n_rewritten = full_ingest(rep)
                ingest_s.append(cold)
                reingest_s.append(again)
                written.append(n_written)
                rewritten.append(n_rewritten)
                log(f"ingest: rep {rep + 1} rag ingest {cold:.1f} s, re-ingest {again:.2f} s")
    shutil.rmtree(runs, ignore_errors=True)
    ingest_median = median(ingest_s)
    encode_median = median(encode_s)
    reingest_median = median(reingest_s)
    # Ratios of medians, and the median of per-repeat ratios (pairs measured back to back are
    # less affected by load from other processes on a shared machine).
    pair_ratios = [i / e for i, e in zip(ingest_s, encode_s, strict=True)]
    return {
        "chunks": written[0],
        "ingest_s": round(ingest_median, 3),
        "encode_only_s": round(encode_median, 3),
        "ratio": round(ingest_median / encode_median, 3),
        "reingest_unchanged_s": round(reingest_median, 3),
        "reingest_ratio": round(reingest_median / ingest_median, 4),
        "reingest_chunks_written": max(rewritten),
        "files": files,
        "batch_size": batch,
        "repeats": repeats,
        "paired_ratio_median": round(median(pair_ratios), 3),
        "runs": {
            "ingest_s": [round(x, 3) for x in ingest_s],
            "encode_only_s": [round(x, 3) for x in encode_s],
            "reingest_unchanged_s": [round(x, 3) for x in reingest_s],
        },
        "encode_chunks_per_s": round(len(texts) / encode_median, 1),
        "subset": quick,
        "target_ratio": TARGET_RATIO,
        "target_reingest_ratio": TARGET_REINGEST_RATIO,
    }
