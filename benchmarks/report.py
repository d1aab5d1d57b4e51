"""The Markdown report: printed after a run and kept in BENCHMARKS.md (full runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR

NOTES = BENCH_DIR / "NOTES.md"


def _num(value: Any, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def _check(value: Any, limit: float, below: bool = True) -> bool | None:
    if not isinstance(value, (int, float)) or value != value:
        return None
    return value <= limit if below else value >= limit


def targets_table(results: dict[str, Any]) -> list[str]:
    scifact = results.get("scifact") or {}
    ingest = results.get("ingest") or {}
    latency = results.get("retrieval_latency") or {}
    million = results.get("retrieval_1m") or {}
    answer = results.get("answer_latency") or {}
    hybrid = (scifact.get("ndcg@10") or {}).get("hybrid")
    reingest_ok = None
    if ingest.get("reingest_ratio") is not None:
        reingest_ok = bool(_check(ingest.get("reingest_ratio"), 0.03)) and (
            ingest.get("reingest_chunks_written") == 0
        )
    ingest_value = (
        f"{_num(ingest.get('ratio'))} ({_num(ingest.get('ingest_s'), 1)} s vs "
        f"{_num(ingest.get('encode_only_s'), 1)} s)"
    )
    reingest_value = (
        f"{_num(ingest.get('reingest_ratio'), 4)} "
        f"({_num(ingest.get('reingest_unchanged_s'), 2)} s, "
        f"{ingest.get('reingest_chunks_written', '?')} chunks written)"
    )
    latency_value = (
        f"{_num(latency.get('ratio'))} (p50 {_num(latency.get('p50_ms'), 1)} ms vs "
        f"{_num(latency.get('query_embed_ms'), 1)} ms)"
    )
    million_value = (
        f"{_num(million.get('ratio'))} (p50 {_num(million.get('p50_ms'), 1)} ms vs "
        f"{_num(million.get('query_embed_ms'), 1)} ms; p95 {_num(million.get('p95_ms'), 1)} ms)"
    )
    change = million.get("incremental") or {}
    change_value = (
        f"{_num(change.get('next_query_after_upsert_s'), 2, ' s')} "
        f"(full BM25 rebuild: {_num(million.get('bm25_build_s'), 0, ' s')})"
    )
    subset = " (subset)" if scifact.get("subset") else ""
    encoder = results.get("encoder") or {}
    reader = results.get("reader") or {}
    cold = results.get("cold_ask") or {}
    rates = encoder.get("docs_per_s") or {}
    fast = encoder.get("default_backend", "onnx-int8")  # results before OpenVINO: int8
    by_backend = encoder.get("speedup_by_backend") or {}
    rows = [
        (f"Embedding throughput, default encoder ({fast}) / PyTorch fp32 (same run)",
         f"{_num(encoder.get('speedup_vs_torch'), 2)} ({_num(rates.get(fast), 1)} vs "
         f"{_num(rates.get('torch'), 1)} docs/s; ONNX fp32 "
         f"{_num(encoder.get('onnx_fp32_speedup_vs_torch'), 2)}, ONNX int8 "
         f"{_num(by_backend.get('onnx-int8'), 2)}, OpenVINO fp32/bf16 "
         f"{_num(by_backend.get('openvino'), 2)})",
         "≥ 2.5", _check(encoder.get("speedup_vs_torch"), 2.5, below=False)),
        (f"SciFact dense nDCG@10, {fast} − fp32",
         f"{_num(encoder.get('scifact_ndcg_delta'), 4)} (int8: "
         f"{_num(encoder.get('int8_ndcg_delta'), 4)})", "≥ −0.005",
         _check(encoder.get("scifact_ndcg_delta"), -0.005, below=False)),
        (f"Reader per question (ranking + in-context re-read), p95 "
         f"({reader.get('backend', 'onnx')})",
         _num(reader.get("p95_ms"), 0, " ms"), "≤ 100 ms", _check(reader.get("p95_ms"), 100.0)),
        ("Cold `rag ask` (fresh process), wall",
         f"{_num(cold.get('wall_s'), 2, ' s')} ({_num(cold.get('peak_rss_mb'), 0)} MB peak)",
         "≤ 3 s", _check(cold.get("wall_s"), 3.0)),
        (f"SciFact nDCG@10, default hybrid{subset}", _num(hybrid), "≥ 0.74 (never < 0.72)",
         _check(hybrid, 0.74, below=False)),
        (f"Ingest / bare encode ({ingest.get('chunks', '?')} chunks)", ingest_value, "≤ 1.15",
         _check(ingest.get("ratio"), 1.15)),
        ("Re-ingest unchanged / cold ingest", reingest_value, "≤ 0.03, 0 written", reingest_ok),
        (f"Hybrid retrieve (excl. query embedding) / query embedding, "
         f"{latency.get('chunks', '?')} chunks", latency_value, "≤ 1.0",
         _check(latency.get("ratio"), 1.0)),
        (f"Hybrid retrieve (excl. query embedding) / query embedding, "
         f"{million.get('chunks', '?')} chunks", million_value, "≤ 1.0",
         _check(million.get("ratio"), 1.0)),
        (f"Next query after upserting a {change.get('new_chunks', '?')}-chunk document, "
         f"{million.get('chunks', '?')} chunks", change_value, "reported", None),
        ("Answer (local LLM): first checked sentence shown p95",
         _num(answer.get("first_checked_p95_s"), 2, " s"), "≤ 1.5 s",
         _check(answer.get("first_checked_p95_s"), 1.5)),
        ("Answer (local LLM): time to first draft token p95",
         _num(answer.get("ttft_p95_s"), 2, " s"), "≤ 1.5 s", _check(answer.get("ttft_p95_s"), 1.5)),
        ("Answer: full answer p95", _num(answer.get("total_p95_s"), 2, " s"), "≤ 5 s",
         _check(answer.get("total_p95_s"), 5.0)),
        ("Reader scoring per question p95 (k = 4)", _num(answer.get("reader_p95_ms"), 0, " ms"),
         "≤ 250 ms", _check(answer.get("reader_p95_ms"), 250.0)),
        ("Startup (process → UI ready)", _num(results.get("startup_s"), 1, " s"), "≤ 15 s",
         _check(results.get("startup_s"), 15.0)),
        ("Peak RSS of `rag serve` (after one answer)", _num(results.get("peak_rss_mb"), 0, " MB"),
         "reported", None),
    ]  # fmt: skip
    lines = ["| Measure | Ours | Target | |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {value} | {target} | {_status(ok)} |" for name, value, target, ok in rows
    ]
    return lines


def scifact_table(results: dict[str, Any]) -> list[str]:
    scifact = results.get("scifact") or {}
    ndcg = scifact.get("ndcg@10") or {}
    recall = scifact.get("recall@100") or {}
    anchors = scifact.get("anchors_ndcg@10") or {}
    label = "subset" if scifact.get("subset") else "test"
    lines = [
        f"| System (SciFact {label}, {scifact.get('queries', '?')} queries) "
        "| nDCG@10 | Recall@100 |",
        "|---|---|---|",
        f"| **ours: default hybrid ({scifact.get('fusion', '?')} fusion)** | "
        f"**{_num(ndcg.get('hybrid'))}** | {_num(recall.get('hybrid'))} |",
        f"| ours: BM25 (bm25s) | {_num(ndcg.get('bm25'))} | {_num(recall.get('bm25'))} |",
        f"| ours: dense (all-MiniLM-L6-v2) | {_num(ndcg.get('dense'))} "
        f"| {_num(recall.get('dense'))} |",
    ]
    lines += [f"| published: {name} | {value:.3f} | |" for name, value in anchors.items()]
    return lines


def details(results: dict[str, Any]) -> list[str]:
    ingest = results.get("ingest") or {}
    latency = results.get("retrieval_latency") or {}
    answer = results.get("answer_latency") or {}
    startup = results.get("startup") or {}
    out = []
    if latency:
        out.append(
            f"- Retrieval at {latency.get('chunks')} chunks, {latency.get('queries')} SciFact "
            f"queries, k={latency.get('k')}, fetch_k={latency.get('fetch_k')}: retrieve excl. "
            f"embedding p50 {_num(latency.get('p50_ms'), 1)} ms / p95 "
            f"{_num(latency.get('p95_ms'), 1)} ms; query embedding p50 "
            f"{_num(latency.get('query_embed_ms'), 1)} ms / p95 "
            f"{_num(latency.get('query_embed_p95_ms'), 1)} ms; full retrieve incl. embedding p50 "
            f"{_num(latency.get('p50_total_ms'), 1)} ms / p95 "
            f"{_num(latency.get('p95_total_ms'), 1)} ms."
        )
    million = results.get("retrieval_1m") or {}
    if million:
        change = million.get("incremental") or {}
        build = million.get("bm25_full_build") or {}
        index = million.get("index") or {}
        out.append(
            f"- Retrieval at {million.get('chunks')} chunks ([docs/scaling.md](docs/scaling.md)): "
            f"retrieve excl. embedding p50 {_num(million.get('p50_ms'), 1)} ms / p95 "
            f"{_num(million.get('p95_ms'), 1)} ms; query embedding p50 "
            f"{_num(million.get('query_embed_ms'), 1)} ms; peak RSS "
            f"{_num(million.get('peak_rss_mb'), 0)} MB (serving "
            f"{_num(million.get('rss_serving_mb'), 0)} MB); store opened (first dense query) "
            f"in {_num(million.get('store_load_s'), 1)} s, cached BM25 loaded in "
            f"{_num(million.get('bm25_load_s'), 1)} s. Full BM25 build "
            f"{_num(build.get('total_s'), 0)} s (read from Chroma "
            f"{_num(build.get('read_s'), 0)} s, index {_num(build.get('index_s'), 0)} s, save "
            f"{_num(build.get('save_s'), 0)} s; peak RSS {_num(build.get('peak_rss_mb'), 0)} MB). "
            f"A new {change.get('new_chunks')}-chunk document: upsert "
            f"{_num(change.get('upsert_s'), 2)} s, next query answered in "
            f"{_num(change.get('next_query_after_upsert_s'), 2)} s (found: "
            f"{change.get('new_document_found')}); delete {_num(change.get('delete_s'), 2)} s, "
            f"next query {_num(change.get('next_query_after_delete_s'), 2)} s (listing the ids: "
            f"{_num(change.get('list_ids_s'), 2)} s). Collection written in "
            f"{_num(index.get('write_s_total'), 0)} s"
            + (f" ({_num(index.get('disk_mb'), 0)} MB on disk)." if index.get("disk_mb") else ".")
            + _pruning_note(million.get("bm25_pruning") or {})
            + (
                f" Measured on an unfinished build ({million.get('chunks')} of "
                f"{million.get('target_chunks')} chunks written; `python -m "
                "benchmarks.retrieval_1m --build` resumes it)."
                if million.get("complete") is False
                else ""
            )
        )
    if ingest:
        out.append(
            f"- Ingest of {ingest.get('files')} SciFact abstracts as files ({ingest.get('chunks')} "
            f"chunks, batch {ingest.get('batch_size')}), {ingest.get('repeats')} interleaved "
            f"repeats: rag ingest {ingest.get('runs', {}).get('ingest_s')} s, bare encode "
            f"{ingest.get('runs', {}).get('encode_only_s')} s (paired-ratio median "
            f"{_num(ingest.get('paired_ratio_median'))}; {ingest.get('encode_chunks_per_s')} "
            "chunks/s)."
        )
    if answer:
        out.append(
            f"- Answers ({answer.get('llm')}): {answer.get('questions')} seed questions, "
            f"{answer.get('llm_calls')} reached the LLM ({answer.get('refused_without_llm')} "
            f"refused before it; percentiles over the LLM calls); TTFT p50 "
            f"{_num(answer.get('ttft_p50_s'), 2)} s, total p50 "
            f"{_num(answer.get('total_p50_s'), 2)} s; "
            f"draft tokens p50 {answer.get('tokens_p50')} (max {answer.get('tokens_max')}, "
            f"max_tokens {answer.get('max_tokens')}); prompt tokens p50 "
            f"{_num(answer.get('prompt_tokens_p50'), 0)} (max {answer.get('prompt_tokens_max')}; "
            f"sources cut to {answer.get('context_chars')} chars); model load "
            f"{_num(answer.get('load_s'), 1)} s."
        )
    if startup:
        runs = startup.get("runs") or []
        out.append(
            "- Startup runs (s): "
            + ", ".join(str(r.get("startup_s")) for r in runs)
            + f"; RSS when ready {runs[0].get('rss_ready_mb') if runs else '?'} MB; "
            f"one API answer: {runs[0].get('asked') if runs else '?'}."
        )
    return out


GATE_DIR = Path(__file__).resolve().parent.parent / "build" / "gate"
QUALITY_SETS = (
    ("answerable", "held-out SQuAD, answerable (21 test articles)"),
    ("adversarial", "held-out SQuAD 2.0 adversarial near misses"),
    ("outside", "held-out questions about articles not indexed"),
    ("seed", "`evals/seed.yaml`"),
    ("handbook", "`evals/handbook.yaml`"),
    ("readmes-validation", "`evals/readmes-validation.yaml` (deciding, not for reporting)"),
    ("readmes-test", "`evals/readmes-test.yaml` (15 READMEs)"),
    ("readmes-test-chats", "the same questions asked as chats of four (`evals/as_chats.py`)"),
)


def answer_quality_table(folder: Path = GATE_DIR) -> list[str]:
    """Answer quality from the `rag eval --json` files `make eval-gate` writes (empty when it
    has not run)."""
    rows = []
    for name, label in QUALITY_SETS:
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text(encoding="utf-8"))["metrics"]
        cells = [
            _num(metrics.get(key), 3)
            for key in (
                "answer_accuracy",
                "false_refusal_rate",
                "citation_accuracy",
                "refusal_accuracy",
            )
        ]
        rows.append(f"| {label} ({metrics.get('n_questions')}) | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "## Answer quality (`make eval-gate`, default extractive mode)",
        "",
        "| Set (questions) | Answer accuracy | False refusals | Citation accuracy | Refused |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def markdown(results: dict[str, Any], notes: bool = True) -> str:
    machine = results.get("machine") or {}
    mode = "quick (subsets, see JSON)" if results.get("quick") else "full"
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{results.get('command', 'make bench')}` on {results.get('date')} "
        f"({mode}; commit {machine.get('commit') or '?'}). Raw numbers: "
        "`benchmarks/results/latest.json`.",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('ram_gb')} GB RAM, {machine.get('os')}, Python {machine.get('python')}; "
        f"load average at start {machine.get('load_average')} "
        "(a shared machine: absolute times are noisy, ratios are measured side by side).",
        "",
        "## Targets",
        "",
        *targets_table(results),
        "",
        *answer_quality_table(),
        "## Retrieval quality: SciFact (BEIR) test split",
        "",
        *scifact_table(results),
        "",
        "## Details",
        "",
        *details(results),
    ]
    errors = results.get("errors") or {}
    if errors:
        lines += ["", "## Sections that failed", ""]
        lines += [f"- {name}: {message}" for name, message in errors.items()]
    if notes and NOTES.exists():
        lines += ["", NOTES.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], path: Path) -> None:
    path.write_text(markdown(results), encoding="utf-8")


def _pruning_note(pruning: dict[str, Any]) -> str:
    """The side-by-side of BM25's top-k by pruning and by scoring every chunk, if measured."""
    if not pruning:
        return ""
    return (
        f" Side by side (best of {pruning.get('repeats')} per query): hybrid p50 "
        f"{_num(pruning.get('hybrid_pruned_p50_ms'), 1)} ms with BM25's top-k by pruning vs "
        f"{_num(pruning.get('hybrid_every_chunk_p50_ms'), 1)} ms scoring every chunk (BM25 "
        f"top-k {_num(pruning.get('bm25_pruned_p50_ms'), 1)} vs "
        f"{_num(pruning.get('bm25_every_chunk_p50_ms'), 1)} ms; pruned for "
        f"{_num(100 * pruning.get('pruned_share', 0), 0)}% of queries)."
    )
