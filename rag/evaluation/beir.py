"""BEIR retrieval evaluation: dense, BM25 and fused rankings scored with nDCG, Recall, MRR."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rag.config import Settings
from rag.evaluation.questions import EvaluationError
from rag.evaluation.runner import settings_summary, version

if TYPE_CHECKING:
    from rag.ingest import IngestProgress, IngestReport


# BEIR retrieval evaluation ----------------------------------------------------------------------

RetrievalMode = Literal["dense", "bm25", "hybrid"]
MODES: tuple[RetrievalMode, ...] = ("dense", "bm25", "hybrid")
RECALL_DEPTH = 100


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: sum of gain / log2(rank + 1), ranks from 1."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(ranking: Sequence[str], relevance: dict[str, int], k: int) -> float:
    """nDCG@k with linear gains (the relevance grade), as trec_eval and BEIR compute it.

    The ideal ranking orders every judged relevant document (grade > 0) by grade."""
    ideal = sorted((grade for grade in relevance.values() if grade > 0), reverse=True)[:k]
    best = dcg(ideal)
    if best == 0:
        return 0.0
    gains = [max(relevance.get(doc_id, 0), 0) for doc_id in ranking[:k]]
    return dcg(gains) / best


def recall_at_k(ranking: Sequence[str], relevance: dict[str, int], k: int) -> float:
    """Share of the relevant documents (grade > 0) found in the top k."""
    relevant = {doc_id for doc_id, grade in relevance.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranking[:k])) / len(relevant)


def mrr_at_k(ranking: Sequence[str], relevance: dict[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document in the top k (0 if none)."""
    for rank, doc_id in enumerate(ranking[:k], start=1):
        if relevance.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


@dataclass
class BeirDataset:
    """A BEIR dataset: corpus {id: (title, text)}, queries {id: text}, qrels {query id:
    {doc id: grade}} (only queries with a relevant document)."""

    name: str
    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        raise EvaluationError(f"{path}: cannot read: {error.strerror or error}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise EvaluationError(f"{path}, line {number}: invalid JSON: {error.msg}") from None
            if not isinstance(data, dict) or "_id" not in data:
                raise EvaluationError(f"{path}, line {number}: expected an object with '_id'")
            yield number, data


def load_beir(folder: Path | str, split: str = "test") -> BeirDataset:
    """Read corpus.jsonl, queries.jsonl and qrels/<split>.tsv; only queries with judgments."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such BEIR dataset folder")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise EvaluationError(
            f"{qrels_path}: missing (splits here: {', '.join(available) or 'none'})"
        )
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t") if "\t" in line else line.split()
        if not line.strip() or (number == 1 and fields[-1].strip().lower() == "score"):
            continue
        if len(fields) < 3:
            raise EvaluationError(f"{qrels_path}, line {number}: expected query-id corpus-id score")
        try:
            grade = int(float(fields[-1]))
        except ValueError:
            raise EvaluationError(
                f"{qrels_path}, line {number}: score {fields[-1]!r} is not a number"
            ) from None
        qrels.setdefault(fields[0].strip(), {})[fields[1].strip()] = grade
    qrels = {qid: grades for qid, grades in qrels.items() if any(g > 0 for g in grades.values())}
    queries = {
        str(data["_id"]): str(data.get("text") or "")
        for _, data in _read_jsonl(folder / "queries.jsonl")
        if str(data["_id"]) in qrels
    }
    missing = sorted(set(qrels) - set(queries))
    if missing:
        raise EvaluationError(
            f"{folder}: {len(missing)} judged queries missing from queries.jsonl "
            f"(e.g. {', '.join(missing[:3])})"
        )
    corpus = {
        str(data["_id"]): (str(data.get("title") or ""), str(data.get("text") or ""))
        for _, data in _read_jsonl(folder / "corpus.jsonl")
    }
    if not corpus:
        raise EvaluationError(f"{folder}/corpus.jsonl holds no documents")
    name = folder.resolve().name
    return BeirDataset(name, corpus, queries, qrels)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def doc_filename(doc_id: str) -> str:
    """The cache file of a corpus document: '<id>.txt' for plain ids, else a hash."""
    import hashlib

    if _SAFE_NAME.match(doc_id) and not doc_id.lower().endswith(".txt"):
        return f"{doc_id}.txt"
    return "h-" + hashlib.sha256(doc_id.encode()).hexdigest()[:24] + ".txt"


def beir_collection_name(dataset: str) -> str:
    """'beir-<dataset>' made safe for Chroma."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset).strip("-._") or "dataset"
    return f"beir-{slug}"[:60].rstrip("-._")


def beir_cache_dir(settings: Settings, dataset: str) -> Path:
    """Where a dataset's documents are written as text files before ingesting."""
    base = (
        settings.data_dir if settings.data_dir is not None else settings.index_dir.parent / "data"
    )
    return base / "beir" / beir_collection_name(dataset).removeprefix("beir-")


def write_corpus_files(dataset: BeirDataset, folder: Path) -> dict[str, str]:
    """Write each document as '<title>\\n\\n<text>' (only files whose content changed, so a
    re-run is incremental); remove files of documents no longer in the corpus.

    Returns {file name: document id} for the documents written (empty ones are skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, str] = {}
    for doc_id, (title, text) in dataset.corpus.items():
        body = "\n\n".join(part.strip() for part in (title, text) if part.strip())
        if not body:
            continue
        name = doc_filename(doc_id)
        if name in by_file:
            raise EvaluationError(f"documents {by_file[name]!r} and {doc_id!r} share a file name")
        by_file[name] = doc_id
        path = folder / name
        content = body + "\n"
        try:
            if path.read_text(encoding="utf-8") == content:
                continue
        except (OSError, UnicodeDecodeError):
            pass
        path.write_text(content, encoding="utf-8")
    for stale in folder.glob("*.txt"):
        if stale.name not in by_file:
            stale.unlink()
    return by_file


def rank_documents(
    searcher: Any, query: str, mode: RetrievalMode, depth: int, total_chunks: int, fetch: int
) -> list[str]:
    """Document sources ranked by their best chunk: at least ``depth`` of them when the
    collection has that many (the chunk fetch depth doubles until it gets there)."""
    fetch = max(fetch, depth)
    while True:
        chunks = searcher.search(query, k=fetch, mode=mode, fetch_k=fetch).chunks
        ranked: list[str] = []
        seen: set[str] = set()
        for chunk in chunks:
            if chunk.source not in seen:
                seen.add(chunk.source)
                ranked.append(chunk.source)
        if len(ranked) >= depth or len(chunks) < fetch or fetch >= total_chunks:
            return ranked[:depth]
        fetch = min(fetch * 2, total_chunks)


@dataclass
class BeirResult:
    """``to_dict`` is the ``rag eval-retrieval --json`` file."""

    dataset: str
    split: str
    k: int
    n_queries: int
    metrics: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_beir(
    folder: Path | str,
    settings: Settings,
    *,
    split: str = "test",
    k: int = 10,
    ingest_progress: Callable[[IngestProgress], None] | None = None,
    on_query: Callable[[int, int], None] | None = None,
) -> BeirResult:
    """Ingest a BEIR dataset into ``beir-<name>`` (incrementally) and score dense, BM25 and
    hybrid retrieval of its judged queries: nDCG@k, Recall@100, MRR@k (document rank = rank of
    its best chunk; retrieval settings as configured)."""
    from rag.ingest import ingest
    from rag.retrieval import HybridSearcher
    from rag.store import embedder_for

    began = time.perf_counter()
    dataset = load_beir(folder, split)
    beir_settings = settings.with_overrides(collection=beir_collection_name(dataset.name))
    cache = beir_cache_dir(settings, dataset.name)
    by_file = write_corpus_files(dataset, cache)
    report: IngestReport = ingest([cache], beir_settings, progress=ingest_progress)
    if not report.ok:
        failed = "; ".join(f"{f.path}: {f.error}" for f in report.failed[:3])
        raise EvaluationError(f"ingesting {dataset.name} failed: {failed}")
    ingested_s = time.perf_counter() - began
    searcher = HybridSearcher(beir_settings, embedder_for(beir_settings))
    total_chunks = searcher.chunk_count()
    depth = max(RECALL_DEPTH, k)
    fetch = max(beir_settings.fetch_k, 3 * depth)
    names = {"ndcg": f"ndcg@{k}", "recall": f"recall@{RECALL_DEPTH}", "mrr": f"mrr@{k}"}
    per_query: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in MODES}
    search_s = dict.fromkeys(MODES, 0.0)
    query_ids = sorted(dataset.queries, key=_natural_key)
    for done, query_id in enumerate(query_ids, start=1):
        relevance = dataset.qrels[query_id]
        for mode in MODES:
            started = time.perf_counter()
            ranked_files = rank_documents(
                searcher, dataset.queries[query_id], mode, depth, total_chunks, fetch
            )
            search_s[mode] += time.perf_counter() - started
            ranking = [by_file.get(name, name) for name in ranked_files]
            per_query[mode][query_id] = {
                names["ndcg"]: round(ndcg_at_k(ranking, relevance, k), 6),
                names["recall"]: round(recall_at_k(ranking, relevance, RECALL_DEPTH), 6),
                names["mrr"]: round(mrr_at_k(ranking, relevance, k), 6),
            }
        if on_query is not None:
            on_query(done, len(query_ids))
    metrics = {
        mode: {
            name: round(float(np.mean([scores[name] for scores in per_query[mode].values()])), 4)
            for name in names.values()
        }
        for mode in MODES
    }
    config = {
        **settings_summary(beir_settings),
        "dataset_dir": str(Path(folder)),
        "cache_dir": str(cache),
        "documents": len(by_file),
        "chunks": total_chunks,
        "chunk_fetch_depth": fetch,
        "ingest": report.to_dict(),
        "ingest_s": round(ingested_s, 2),
        "search_s": {mode: round(seconds, 2) for mode, seconds in search_s.items()},
        "rag_version": version(),
    }
    return BeirResult(dataset.name, split, k, len(query_ids), metrics, per_query, config)


def _natural_key(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)
