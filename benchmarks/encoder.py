"""Encoders side by side in one run: the packaged MiniLM with PyTorch fp32, ONNX Runtime fp32,
ONNX Runtime int8, OpenVINO (bf16 products where the CPU has bf16 units) and OpenVINO static
int8 (throughput on SciFact abstracts, agreement with PyTorch, SciFact
dense nDCG@10 with each), the reader with PyTorch, ONNX Runtime and OpenVINO (per question, as
answering reads), and a cold ``rag ask`` (wall time and peak memory of a fresh process).

The headline figures (``speedup_vs_torch``, ``scifact_ndcg_delta``, the reader's ``p95_ms``)
are the default encoder's (RAG_ENCODER_BACKEND=auto: OpenVINO where it loads); the others,
OpenVINO int8 among them, stay beside them."""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CACHE_DIR, SCIFACT_DIR, SEEDS_DIR, log, percentile, settings

QUICK_DOCS = 200
FULL_DOCS = 400
QUICK_NDCG_DOCS = 1000  # quick: judged documents plus the first others, up to this many
TARGET_SPEEDUP = 2.5
TARGET_NDCG_DELTA = -0.005
TARGET_READER_P95_MS = 100.0
TARGET_COLD_ASK_S = 3.0
COLD_QUESTION = "What share of Russia's microelectronics came from China?"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")


def default_backend() -> str:
    """The embedding backend a default install runs ("auto" resolved on this machine)."""
    from rag.onnx_encoders import resolve_backend

    return resolve_backend("auto")


def _texts(dataset: Any, limit: int | None) -> tuple[list[str], list[str]]:
    ids = list(dataset.corpus)[:limit] if limit else list(dataset.corpus)
    return ids, [f"{dataset.corpus[d][0]}\n{dataset.corpus[d][1]}".strip() for d in ids]


def throughput(texts: list[str], rounds: int = 3) -> dict[str, Any]:
    """docs/s of each backend on the same texts (after a warm-up), and cosine to PyTorch.

    The backends take turns, ``rounds`` times over (torch, onnx, onnx-int8, torch, ...), and
    each reports its median round: on a shared machine a slow spell then hits every backend
    alike instead of whichever happened to run during it."""
    from rag.embeddings import Embedder

    embedders = {backend: Embedder(backend=backend) for backend in BACKENDS}
    for embedder in embedders.values():
        embedder.encode(texts[:8])  # load (and export, the first time) outside the timing
    vectors: dict[str, np.ndarray] = {}
    samples: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    for _ in range(rounds):
        for backend, embedder in embedders.items():
            began = time.perf_counter()
            vectors[backend] = embedder.encode(texts)
            samples[backend].append(len(texts) / (time.perf_counter() - began))
    rates = {backend: statistics.median(values) for backend, values in samples.items()}
    base = vectors["torch"]
    return {
        "docs": len(texts),
        "rounds": rounds,
        "default_backend": default_backend(),
        "docs_per_s": {b: round(r, 1) for b, r in rates.items()},
        "docs_per_s_rounds": {b: [round(r, 1) for r in v] for b, v in samples.items()},
        "speedup_vs_torch": round(rates[default_backend()] / rates["torch"], 2),
        "speedup_by_backend": {b: round(rates[b] / rates["torch"], 2) for b in BACKENDS[1:]},
        "onnx_fp32_speedup_vs_torch": round(rates["onnx"] / rates["torch"], 2),
        "cosine_to_torch": {
            b: round(float((vectors[b] * base).sum(axis=1).mean()), 4) for b in BACKENDS[1:]
        },
    }


def dense_ndcg(dataset: Any, quick: bool) -> dict[str, Any]:
    """Dense nDCG@10 on SciFact test queries with each backend but torch (the same corpus for
    all; ONNX fp32 gives torch's vectors, cosine 1.000): the default's delta to fp32, and int8's."""
    from rag.embeddings import Embedder
    from rag.evaluation.beir import ndcg_at_k

    judged = {doc for grades in dataset.qrels.values() for doc in grades}
    ids = [doc for doc in dataset.corpus if doc in judged]
    if quick:
        ids += [d for d in dataset.corpus if d not in judged][: QUICK_NDCG_DOCS - len(ids)]
    else:
        ids += [d for d in dataset.corpus if d not in judged]
    texts = [f"{dataset.corpus[d][0]}\n{dataset.corpus[d][1]}".strip() for d in ids]
    queries = list(dataset.qrels)
    scores: dict[str, float] = {}
    for backend in BACKENDS[1:]:
        embedder = Embedder(backend=backend)
        corpus = embedder.encode(texts)
        asked = embedder.encode([dataset.queries[q] for q in queries])
        values = []
        for row, query in zip(asked @ corpus.T, queries, strict=True):
            top = [ids[i] for i in np.argsort(-row)[:10]]
            values.append(ndcg_at_k(top, dataset.qrels[query], 10))
        scores[backend] = round(float(np.mean(values)), 4)
    return {
        "corpus_docs": len(ids),
        "queries": len(queries),
        "dense_ndcg@10": scores,
        "scifact_ndcg_delta": round(scores[default_backend()] - scores["onnx"], 4),
        "int8_ndcg_delta": round(scores["onnx-int8"] - scores["onnx"], 4),
    }


def _seed_passages(k: int = 4) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """The first ``k`` chunks of the seed article as the passage reader reads them: (title,
    chunk text, its sentence spans)."""
    from rag.chunking import chunk_document, sentence_spans
    from rag.config import Settings
    from rag.loaders import load_file

    path = SEEDS_DIR / "china_russia_military_supply.txt"
    defaults = Settings()
    chunks = chunk_document(
        load_file(path), path.name, path.name, defaults.chunk_size, defaults.chunk_overlap
    )[:k]
    return [(c.title, c.text, sentence_spans(c.text)) for c in chunks]


def reader_latency(repeats: int, folder: Path | None = None) -> dict[str, Any]:
    """Reader time per question as answering spends it. A sentence reader: MAX_READER_CANDIDATES
    sentences ranked, then the CONTEXT_CANDIDATES best read again after the sentence before
    them; a passage reader: the k = 4 retrieved chunks, each read once. ``folder``: the
    reader (default: the shipped one)."""
    from rag.answer.reading import CONTEXT_CANDIDATES, MAX_READER_CANDIDATES
    from rag.reader import READER_DIR, Reader, with_context

    folder = folder or READER_DIR
    if Reader(folder).reads_passages:
        passages = _seed_passages()
        result: dict[str, Any] = {"passages": len(passages)}

        def read(reader: Reader) -> None:
            reader.score_passages(COLD_QUESTION, passages)

    else:
        text = (SEEDS_DIR / "china_russia_military_supply.txt").read_text(encoding="utf-8")
        sentences = [s.strip() + "." for s in text.replace("\n", " ").split(". ") if s.strip()]
        pool = (sentences * 3)[: MAX_READER_CANDIDATES + 1]
        ranked = [("China and Russia", s) for s in pool[1:]]
        in_context = [
            (with_context("China and Russia", before), sentence)
            for before, sentence in itertools.pairwise(pool[: CONTEXT_CANDIDATES + 1])
        ]
        result = {"sentences": len(ranked), "context_sentences": len(in_context)}

        def read(reader: Reader) -> None:
            reader.score(COLD_QUESTION, ranked)
            reader.score(COLD_QUESTION, in_context)

    from rag.reader import reader_backend_for

    for backend in ("torch", "onnx", "openvino"):
        reader = Reader(folder, backend=backend)
        read(reader)
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            read(reader)
            times.append(1000 * (time.perf_counter() - began))
        result[backend] = {
            "p50_ms": round(percentile(times, 50), 1),
            "p95_ms": round(percentile(times, 95), 1),
        }
    result["backend"] = reader_backend_for("auto")
    result["p95_ms"] = result[result["backend"]]["p95_ms"]
    result["speedup_vs_torch"] = round(
        result["torch"]["p50_ms"] / result[result["backend"]]["p50_ms"], 2
    )
    return result


def cold_ask(runs: int) -> dict[str, Any]:
    """``rag ask`` in a fresh process over the seed index (extractive): wall time and peak RSS."""
    from benchmarks.answer_latency import seed_index

    index = seed_index(CACHE_DIR / "seed-index")
    rag = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "rag"
    command = [str(rag), "ask", COLD_QUESTION, "--index", str(index), "--llm", "extractive"]
    subprocess.run(command, capture_output=True, check=True)  # caches warm (exports made)
    walls, peaks = [], []
    for _ in range(runs):
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
        walls.append(time.perf_counter() - began)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"rag ask failed: {' '.join(command)}")
        peaks.append(usage.ru_maxrss / 1024)
    return {
        "runs": runs,
        "wall_s": round(statistics.median(walls), 2),
        "wall_max_s": round(max(walls), 2),
        "peak_rss_mb": round(max(peaks), 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from rag.evaluation import load_beir

    settings()  # the benchmark environment (offline, isolated)
    # First, while this process is small: Linux counts a child's memory from the fork, so a
    # child forked from a process holding PyTorch would report PyTorch's pages as its own.
    log("encoder: cold `rag ask`")
    cold = cold_ask(3 if quick else 5)
    dataset = load_beir(SCIFACT_DIR, "test")
    _, texts = _texts(dataset, QUICK_DOCS if quick else FULL_DOCS)
    log(f"encoder: throughput on {len(texts)} SciFact abstracts, {len(BACKENDS)} backends")
    result: dict[str, Any] = throughput(texts)
    log("encoder: SciFact dense nDCG@10, fp32, int8 and openvino")
    result.update(dense_ndcg(dataset, quick))
    log("encoder: reader per question, torch, onnx and openvino")
    result["reader"] = reader_latency(10 if quick else 30)
    result["cold_ask"] = cold
    result["targets"] = {
        "speedup_vs_torch": TARGET_SPEEDUP,
        "scifact_ndcg_delta": TARGET_NDCG_DELTA,
        "reader_p95_ms": TARGET_READER_P95_MS,
        "cold_ask_wall_s": TARGET_COLD_ASK_S,
    }
    result["subset"] = quick
    return result
