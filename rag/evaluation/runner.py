"""Running a question set through the pipeline, conversations turn by turn."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.evaluation.metrics import compute_metrics
from rag.evaluation.questions import EvaluationError, QuestionSet
from rag.evaluation.scoring import ItemResult, score_item

if TYPE_CHECKING:
    from rag.answer import RAG


# Running a question set ------------------------------------------------------------------------

ItemCallback = Callable[[int, int, ItemResult], None]


@dataclass
class EvalRun:
    """A finished evaluation: ``to_dict`` is the ``rag eval --json`` file."""

    metrics: dict[str, Any]
    support: dict[str, int]
    items: list[ItemResult]
    config: dict[str, Any]

    @property
    def failed(self) -> list[ItemResult]:
        return [item for item in self.items if not item.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": dict(self.metrics),
            "support": dict(self.support),
            "items": [item.to_dict() for item in self.items],
            "config": dict(self.config),
        }


CONFIG_FIELDS = (
    "index_dir", "collection", "chroma_url", "embedding_model", "chunk_size", "chunk_overlap",
    "k", "fetch_k", "fusion", "rrf_k", "dense_weight", "bm25_weight", "answer_threshold", "llm",
    "llm_max_tokens", "llm_context_tokens",
)  # fmt: skip


def settings_summary(settings: Settings) -> dict[str, Any]:
    """The settings that decide results (never credentials), JSON-ready."""
    data = settings.model_dump(mode="json")
    return {key: data.get(key) for key in CONFIG_FIELDS}


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rag-offline")
    except PackageNotFoundError:
        return "unknown"


def run_evaluation(
    question_set: QuestionSet,
    bot: RAG,
    *,
    k: int | None = None,
    llm: str | None = None,
    set_path: str | None = None,
    on_item: ItemCallback | None = None,
    warm_up: bool = True,
) -> EvalRun:
    """Ask every question (conversations turn by turn, with history) and score the answers.

    Latency is each ask's wall time; with ``warm_up`` one untimed question is asked first so
    that loading the models is not counted.

    A question the pipeline rejects (QuestionError) is recorded as a failed item; any other
    error (index missing, LLM unavailable) stops the run.
    """
    from rag.answer import QuestionError

    if bot.searcher.is_empty():
        where = bot.settings.chroma_url or bot.settings.index_dir
        raise EvaluationError(
            f"the collection '{bot.settings.collection}' at {where} is empty: "
            "ingest your documents first (rag ingest PATH)"
        )
    started_at = datetime.now(UTC)
    began = time.perf_counter()
    items = question_set.items()
    total = len(items)
    warm_up_s = 0.0
    if warm_up and items:
        # Models load lazily on first use: one untimed question keeps loading out of latency.
        with contextlib.suppress(QuestionError):
            bot.ask(items[0].case.question, k=k, llm=llm)
        warm_up_s = time.perf_counter() - began
    results: list[ItemResult] = []
    history: list[tuple[str, str]] = []
    conversation: str | None = None
    for item in items:
        if item.conversation != conversation:
            history, conversation = [], item.conversation
        asked = time.perf_counter()
        answer, error = None, None
        try:
            answer = bot.ask(
                item.case.question, list(history) if item.conversation else None, k=k, llm=llm
            )
        except QuestionError as problem:
            error = str(problem)
        latency = time.perf_counter() - asked
        if item.conversation:
            history.append((item.case.question, answer.answer if answer else ""))
        result = score_item(item, answer, latency, error)
        results.append(result)
        if on_item is not None:
            on_item(len(results), total, result)
    metrics, support = compute_metrics(results)
    settings = bot.settings.with_overrides(k=k, llm=llm)
    config = {
        "question_set": set_path,
        "name": question_set.name,
        **settings_summary(settings),
        "llm_label": results_llm_label(bot, llm),
        "rag_version": version(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - began, 3),
        "warm_up_s": round(warm_up_s, 3),
    }
    return EvalRun(metrics, support, results, config)


def results_llm_label(bot: RAG, llm: str | None) -> str:
    """The LLM label answers carry (e.g. 'local', 'extractive', 'ollama:llama3.2')."""
    from rag.llm import parse_spec

    return parse_spec(llm).label if llm else bot.default_spec.label
