"""Aggregate metrics over scored items (None when no item is eligible)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.evaluation.scoring import ItemResult

if TYPE_CHECKING:
    pass


# Metrics ---------------------------------------------------------------------------------------

METRICS: tuple[str, ...] = (
    "answer_accuracy",
    "retrieval_hit_rate",
    "mrr",
    "citation_accuracy",
    "uncited_sentence_rate",
    "refusal_accuracy",
    "false_refusal_rate",
    "latency_p50_s",
    "latency_p95_s",
    "n_questions",
)
LOWER_IS_BETTER = frozenset(
    {"uncited_sentence_rate", "false_refusal_rate", "latency_p50_s", "latency_p95_s"}
)
RATE_METRICS = tuple(m for m in METRICS if not m.startswith(("latency", "n_")))


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), None for no values."""
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 4)


def compute_metrics(results: Sequence[ItemResult]) -> tuple[dict[str, Any], dict[str, int]]:
    """(metrics, support): each metric's value (None when no item is eligible) and how many
    items it was computed over."""
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    with_expected = [r for r in answerable if r.answer_correct is not None]
    with_evidence = [r for r in results if r.retrieval_hit is not None]
    cited = [r for r in results if r.citation_correct is not None]
    answered = [r for r in results if r.answered and r.sentences]
    sentences = sum(r.sentences for r in answered)
    latencies = [r.latency_s for r in results if r.error is None]
    metrics: dict[str, Any] = {
        "answer_accuracy": _mean(float(bool(r.answer_correct)) for r in with_expected),
        "retrieval_hit_rate": _mean(float(bool(r.retrieval_hit)) for r in with_evidence),
        "mrr": _mean(r.reciprocal_rank or 0.0 for r in with_evidence),
        "citation_accuracy": _mean(float(bool(r.citation_correct)) for r in cited),
        "uncited_sentence_rate": (
            round(sum(r.uncited_sentences for r in answered) / sentences, 4) if sentences else None
        ),
        "refusal_accuracy": _mean(float(r.refused) for r in unanswerable),
        "false_refusal_rate": _mean(float(r.refused) for r in answerable),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "n_questions": len(results),
    }
    support = {
        "answer_accuracy": len(with_expected),
        "retrieval_hit_rate": len(with_evidence),
        "mrr": len(with_evidence),
        "citation_accuracy": len(cited),
        "uncited_sentence_rate": sentences,
        "refusal_accuracy": len(unanswerable),
        "false_refusal_rate": len(answerable),
        "latency_p50_s": len(latencies),
        "latency_p95_s": len(latencies),
        "n_questions": len(results),
    }
    return metrics, support
