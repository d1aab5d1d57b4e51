"""Answer latency with the offline default LLM (SmolLM2-135M via llama-cpp) over the seed index:
time to the first raw draft token, to the first checked sentence shown (the first thing a user
sees: nothing unchecked is shown), and to the final answer, per seed question."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import CACHE_DIR, SEED_QUESTIONS, SEEDS_DIR, Timer, log, percentile, settings

QUICK_QUESTIONS = 8
TARGET_TTFT_P95_S = 1.5
TARGET_FIRST_CHECKED_P95_S = 1.5
TARGET_TOTAL_P95_S = 5.0


def seed_index(index_dir: Path | None = None) -> Path:
    """An index of seeds/ (incremental: cheap when it exists)."""
    from rag.ingest import ingest

    index_dir = index_dir or CACHE_DIR / "seed-index"
    report = ingest([SEEDS_DIR], settings(index_dir=index_dir, llm="extractive"))
    if not report.ok:
        raise RuntimeError(f"ingesting seeds/ failed: {report.failed[:3]}")
    return index_dir


def seed_questions(limit: int | None = None) -> list[tuple[str, str, bool]]:
    """(id, question, answerable) of the stand-alone seed questions, in file order."""
    from rag.evaluation import load_question_set

    questions = load_question_set(SEED_QUESTIONS).questions
    picked = [(q.id, q.question, q.answerable) for q in questions]
    return picked[:limit] if limit else picked


def run(
    quick: bool = False,
    *,
    llm: str = "local",
    index_dir: Path | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    from rag.answer import RAG
    from rag.llm import max_tokens_for

    index_dir = seed_index(index_dir)
    bot = RAG(settings(index_dir=index_dir, llm=llm))
    questions = seed_questions(limit or (QUICK_QUESTIONS if quick else None))
    with Timer() as load_timer:
        model = bot.model_for(bot.default_spec)
        _ = getattr(model, "llama", None)  # the GGUF weights
        bot.embedder.encode_query("warm up")
        bot.searcher.bm25()
    with Timer() as warm_timer:
        bot.ask("What does the article say about China and Russia?")  # first-call costs
    log(f"answer_latency: {len(questions)} questions, LLM {bot.default_spec.label}")
    reader_calls: list[tuple[float, int]] = []  # (seconds, sentences) of each reader call
    score = bot.reader.score

    def timed_score(question: str, candidates: list, **kwargs: Any):
        began = time.perf_counter()
        result = score(question, candidates, **kwargs)
        reader_calls.append((time.perf_counter() - began, len(candidates)))
        return result

    bot.reader.score = timed_score  # type: ignore[method-assign]
    rows: list[dict[str, Any]] = []
    for item_id, question, answerable in questions:
        reader_calls.clear()
        started = time.perf_counter()
        first: float | None = None
        checked: float | None = None
        tokens = 0
        answer = None
        for event in bot.stream(question, drafts=True):
            if event.kind == "token":
                tokens += 1
                if first is None:
                    first = time.perf_counter()
            elif event.kind == "sentence" and checked is None:
                checked = time.perf_counter()
            elif event.kind == "final":
                answer = event.answer
        ended = time.perf_counter()
        assert answer is not None
        # Tokens in the local model's context after the answer (prompt + generated): the
        # prompt's size is what the time to first token pays for.
        in_context = getattr(getattr(model, "_llama", None), "n_tokens", None)
        rows.append(
            {
                "id": item_id,
                "answerable": answerable,
                "mode": answer.mode,
                "llm_called": first is not None,
                "ttft_s": round(first - started, 3) if first is not None else None,
                "first_checked_s": round((checked or ended) - started, 3),
                "total_s": round(ended - started, 3),
                "retrieve_s": answer.timings.retrieve_s,
                "tokens": tokens,
                "prompt_tokens": in_context - tokens if in_context and first else None,
                "reader_ms": round(1000 * sum(t for t, _ in reader_calls), 1),
                "reader_sentences": sum(n for _, n in reader_calls),
            }
        )
    generated = [row for row in rows if row["llm_called"]]
    ttft = [row["ttft_s"] for row in generated]
    total = [row["total_s"] for row in generated]
    decode = [
        row["tokens"] / (row["total_s"] - row["ttft_s"])
        for row in generated
        if row["tokens"] > 1 and row["total_s"] > row["ttft_s"]
    ]
    return {
        "llm": bot.default_spec.label,
        "ttft_p50_s": round(percentile(ttft, 50), 3),
        "ttft_p95_s": round(percentile(ttft, 95), 3),
        # What a user waits for: the first checked sentence on screen (the refusal, when the
        # documents don't answer), over every question.
        "first_checked_p50_s": round(percentile([r["first_checked_s"] for r in rows], 50), 3),
        "first_checked_p95_s": round(percentile([r["first_checked_s"] for r in rows], 95), 3),
        "total_p50_s": round(percentile(total, 50), 3),
        "total_p95_s": round(percentile(total, 95), 3),
        "questions": len(rows),
        "llm_calls": len(generated),
        "refused_without_llm": len(rows) - len(generated),
        "total_all_p95_s": round(percentile([row["total_s"] for row in rows], 95), 3),
        "tokens_p50": round(percentile([row["tokens"] for row in generated], 50), 1),
        "tokens_max": max((row["tokens"] for row in generated), default=0),
        "prompt_tokens_p50": percentile(
            [row["prompt_tokens"] for row in generated if row["prompt_tokens"]], 50
        ),
        "prompt_tokens_max": max(
            (row["prompt_tokens"] for row in generated if row["prompt_tokens"]), default=None
        ),
        "stream_events_per_s_p50": round(percentile(decode, 50), 1),
        # The reader's own time per question (ranking sentences, checking generated ones),
        # over every question, refused or not.
        "reader_p50_ms": percentile([row["reader_ms"] for row in rows], 50),
        "reader_p95_ms": percentile([row["reader_ms"] for row in rows], 95),
        "reader_sentences_p50": percentile([row["reader_sentences"] for row in rows], 50),
        "load_s": round(load_timer.seconds, 2),
        "first_answer_s": round(warm_timer.seconds, 2),
        "max_tokens": max_tokens_for(bot.default_spec, bot.settings),
        "context_chars": bot.context_budget(bot.default_spec),
        "per_question": rows,
        "subset": quick,
        "target_ttft_p95_s": TARGET_TTFT_P95_S,
        "target_total_p95_s": TARGET_TOTAL_P95_S,
        "target_first_checked_p95_s": TARGET_FIRST_CHECKED_P95_S,
    }
