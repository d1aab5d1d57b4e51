"""``python -m benchmarks.run [--quick] [--only SECTION,...]``: run the benchmarks, write
``benchmarks/results/latest.json`` and print a Markdown table (kept in BENCHMARKS.md after a
full run of every section).

Each section runs in its own Python process (clean caches, its own peak memory), in this order:
encoder, scifact, ingest, retrieval_latency, retrieval_1m, answer_latency, startup
(retrieval_1m only in full runs, or named with --only). Caches that only save time (the SciFact
index, the 100k- and 1M-chunk latency indexes) live in ``benchmarks/.cache``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    CACHE_DIR,
    RESULTS_DIR,
    ROOT,
    SCIFACT_DIR,
    isolate_environment,
    json_safe,
    log,
    machine_info,
    rss_mb,
)

SECTIONS = (
    "encoder",
    "scifact",
    "ingest",
    "retrieval_latency",
    "retrieval_1m",
    "answer_latency",
    "startup",
)
# Sections a --quick run leaves out unless named with --only (the 1M index takes an hour to build).
FULL_ONLY = ("retrieval_1m",)

# The keys of latest.json that others rely on (issue 6); sections add more.
CONTRACT: dict[str, tuple[str, ...]] = {
    "encoder": ("speedup_vs_torch", "scifact_ndcg_delta"),
    "reader": ("p95_ms",),
    "cold_ask": ("wall_s",),
    "scifact": ("ndcg@10", "recall@100"),
    "ingest": (
        "chunks",
        "ingest_s",
        "encode_only_s",
        "ratio",
        "reingest_unchanged_s",
        "reingest_ratio",
    ),
    "retrieval_latency": ("chunks", "p50_ms", "p95_ms", "query_embed_ms", "ratio"),
    "retrieval_1m": (
        "chunks",
        "p50_ms",
        "p95_ms",
        "query_embed_ms",
        "ratio",
        "peak_rss_mb",
        "bm25_build_s",
        "store_load_s",
        "bm25_load_s",
        "incremental",
    ),
    "answer_latency": (
        "llm",
        "ttft_p50_s",
        "ttft_p95_s",
        "first_checked_p50_s",
        "first_checked_p95_s",
        "total_p50_s",
        "total_p95_s",
    ),
}
TOP_LEVEL = ("startup_s", "peak_rss_mb")
SCIFACT_MODES = ("bm25", "dense", "hybrid")


def missing_keys(results: dict[str, Any]) -> list[str]:
    """Contract keys absent from ``results`` (as 'section.key')."""
    missing = [key for key in TOP_LEVEL if key not in results]
    for section, keys in CONTRACT.items():
        if results.get("quick") and section in FULL_ONLY and section not in results:
            continue
        data = results.get(section)
        if not isinstance(data, dict):
            missing.append(section)
            continue
        missing += [f"{section}.{key}" for key in keys if key not in data]
    scifact = results.get("scifact") or {}
    for metric in CONTRACT["scifact"]:
        values = scifact.get(metric)
        if isinstance(values, dict):
            missing += [f"scifact.{metric}.{m}" for m in SCIFACT_MODES if m not in values]
    return missing


def run_section(name: str, quick: bool) -> dict[str, Any]:
    """Run one section in this process and return its result."""
    if name == "encoder":
        from benchmarks import encoder as module
    elif name == "scifact":
        from benchmarks import scifact as module
    elif name == "ingest":
        from benchmarks import ingest_speed as module
    elif name == "retrieval_latency":
        from benchmarks import retrieval_latency as module
    elif name == "retrieval_1m":
        from benchmarks import retrieval_1m as module
    elif name == "answer_latency":
        from benchmarks import answer_latency as module
    elif name == "startup":
        from benchmarks import startup as module
    else:
        raise SystemExit(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}")
    return module.run(quick=quick)


def spawn_section(name: str, quick: bool) -> dict[str, Any]:
    """Run a section in a child process; its result, or {"error": ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "benchmarks.run", "--section", name, "--out", str(out)]
        if quick:
            command.append("--quick")
        started = time.perf_counter()
        process = subprocess.run(command, cwd=ROOT)
        seconds = time.perf_counter() - started
        if process.returncode != 0 or not out.exists():
            return {"error": f"exit status {process.returncode}", "wall_s": round(seconds, 1)}
        data = json.loads(out.read_text(encoding="utf-8"))
        data["wall_s"] = round(seconds, 1)
        return data


def assemble(sections: dict[str, dict[str, Any]], previous: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = dict(previous)
    errors: dict[str, str] = dict(results.get("errors") or {})
    for name, data in sections.items():
        errors.pop(name, None)
        if "error" in data:
            errors[name] = data["error"]
        if name == "encoder":
            results["encoder"] = data
            results["reader"] = data.get("reader", {})
            results["cold_ask"] = data.get("cold_ask", {})
        elif name == "startup":
            results["startup"] = data
            results["startup_s"] = data.get("startup_s")
            results["peak_rss_mb"] = data.get("peak_rss_mb")
        else:
            results[name] = data
    results["errors"] = errors
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="subsets: under 5 minutes")
    parser.add_argument("--only", default="", help="comma-separated sections to (re)run")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()] or [
        s for s in SECTIONS if not (args.quick and s in FULL_ONLY)
    ]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    needs_scifact = {"encoder", "scifact", "ingest", "retrieval_latency", "retrieval_1m"} & set(
        wanted
    )
    if needs_scifact and not args.section and not (SCIFACT_DIR / "corpus.jsonl").is_file():
        parser.exit(
            2,
            f"error: the SciFact dataset (BEIR format) is not at {SCIFACT_DIR}; set "
            "RAG_BENCH_SCIFACT=/path/to/scifact, or run --only answer_latency,startup\n",
        )
    isolate_environment()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if args.section:  # child process
        result = run_section(args.section, args.quick)
        result["process_peak_rss_mb"] = rss_mb()
        Path(args.out).write_text(json.dumps(json_safe(result)), encoding="utf-8")
        return 0

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    latest = RESULTS_DIR / "latest.json"
    partial = set(wanted) != set(SECTIONS) and not (
        args.quick and set(wanted) == set(SECTIONS) - set(FULL_ONLY)
    )
    machine = machine_info()
    started = time.perf_counter()
    sections: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        if name in wanted:
            log(f"=== {name}{' (quick)' if args.quick else ''}")
            sections[name] = spawn_section(name, args.quick)
            log(f"=== {name} done in {sections[name].get('wall_s')} s")
    previous: dict[str, Any] = {}
    if partial and latest.exists():  # read now: another partial run may have finished meanwhile
        previous = json.loads(latest.read_text(encoding="utf-8"))
    results = assemble(sections, previous)
    results.update(
        machine=machine,
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
        quick=args.quick or bool(previous.get("quick")) if partial else args.quick,
        command="make bench-quick" if args.quick else "make bench",
        wall_s=round(time.perf_counter() - started, 1),
    )
    if partial:
        results["partial_runs"] = sorted(set(previous.get("partial_runs", [])) | set(wanted))
    else:
        results.pop("partial_runs", None)
    missing = missing_keys(results)
    if missing:
        log("contract keys missing: " + ", ".join(missing))
    latest.write_text(json.dumps(json_safe(results), indent=2) + "\n")
    from benchmarks.report import markdown

    text = markdown(results, notes=False)
    print(text)
    if not partial and not args.quick:
        (ROOT / "BENCHMARKS.md").write_text(markdown(results), encoding="utf-8")
        log("wrote BENCHMARKS.md and benchmarks/results/latest.json")
    else:
        (RESULTS_DIR / "latest.md").write_text(text, encoding="utf-8")
        log("wrote benchmarks/results/latest.json and latest.md (BENCHMARKS.md: full runs only)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
