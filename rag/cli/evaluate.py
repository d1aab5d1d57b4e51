"""``rag eval`` and ``rag eval-retrieval``: scoring answers and retrieval."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rag.cli.common import (
    ProgressBar,
    collection_option,
    error_line,
    index_option,
    reports_errors,
    settings_for,
)


def _bounds_callback(kind: str) -> Callable[..., Any]:
    """Validate --fail-under/--fail-over values early (bad metric names exit 2)."""

    def callback(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
        from rag.evaluation import parse_bounds

        try:
            return parse_bounds(values, kind)  # type: ignore[arg-type]
        except ValueError as error:
            raise click.BadParameter(str(error), ctx=ctx, param=param) from None

    return callback


def _write_json_file(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


@click.command("eval")
@click.argument("question_set", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@index_option
@collection_option
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write {metrics, items, config} to this file.",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write an HTML report with PNG charts into this folder.",
)
@click.option("--llm", default=None, help="LLM backend (RAG_LLM): local, extractive, gguf:…, …")
@click.option("--k", type=click.IntRange(1, 50), default=None, help="Chunks to answer from.")
@click.option(
    "--compare",
    "compare_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A previous --json result: show metric changes and flipped items.",
)
@click.option(
    "--fail-under",
    "fail_under",
    multiple=True,
    metavar="METRIC=VALUE",
    callback=_bounds_callback("under"),
    help="Exit 1 when METRIC is below VALUE (repeatable; comma-separated lists too).",
)
@click.option(
    "--fail-over",
    "fail_over",
    multiple=True,
    metavar="METRIC=VALUE",
    callback=_bounds_callback("over"),
    help="Exit 1 when a lower-is-better METRIC (latency, false_refusal_rate, "
    "uncited_sentence_rate) is above VALUE.",
)
@reports_errors
def eval_command(
    question_set: Path,
    index_dir: Path | None,
    collection: str | None,
    json_path: Path | None,
    report_dir: Path | None,
    llm: str | None,
    k: int | None,
    compare_path: Path | None,
    fail_under: list[Any],
    fail_over: list[Any],
) -> None:
    """Run a question set (YAML or JSONL) against the index and score the answers."""
    from rag.answer import RAG
    from rag.evaluation import (
        check_bounds,
        compare_runs,
        load_question_set,
        load_run,
        run_evaluation,
    )
    from rag.report import print_comparison, print_summary, write_report

    settings = settings_for(index_dir=index_dir, collection=collection, llm=llm, k=k)
    questions = load_question_set(question_set)
    previous = load_run(compare_path) if compare_path else None
    bot = RAG(settings)
    with ProgressBar("eval", enabled=sys.stderr.isatty()) as bar:
        run = run_evaluation(
            questions,
            bot,
            k=k,
            llm=llm,
            set_path=str(question_set),
            on_item=lambda done, total, item: bar.update(done, total, item.id[-40:]),
        )
    data = run.to_dict()
    comparison = compare_runs(previous, data) if previous is not None else None
    if json_path is not None:
        _write_json_file(json_path, data)
    print_summary(run)
    if comparison is not None:
        click.echo()
        print_comparison(comparison, str(compare_path))
    if report_dir is not None:
        page = write_report(run, report_dir, comparison)
        click.echo(f"report: {page}")
    problems = check_bounds(run.metrics, [*fail_under, *fail_over])
    for problem in problems:
        error_line(f"gate failed: {problem}")
    sys.exit(1 if problems else 0)


@click.command("eval-retrieval")
@click.option(
    "--beir",
    "beir_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).",
)
@click.option("--split", default="test", show_default=True, help="The qrels split to score.")
@click.option(
    "--k", type=click.IntRange(1, 100), default=10, show_default=True, help="Cut-off of nDCG/MRR."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the metrics (and per-query scores) to this file.",
)
@index_option
@reports_errors
def eval_retrieval(
    beir_dir: Path, split: str, k: int, json_path: Path | None, index_dir: Path | None
) -> None:
    """Score dense, BM25 and hybrid retrieval on a BEIR dataset (own collection, cached)."""
    from rag.evaluation import evaluate_beir
    from rag.report import print_beir

    settings = settings_for(index_dir=index_dir)
    with ProgressBar("eval-retrieval", enabled=sys.stderr.isatty()) as bar:
        result = evaluate_beir(
            beir_dir,
            settings,
            split=split,
            k=k,
            ingest_progress=lambda event: bar.update(
                event.files_done, event.files_total, f"ingest · {event.chunks_written} chunks"
            ),
            on_query=lambda done, total: bar.update(done, total, "queries"),
        )
    if json_path is not None:
        _write_json_file(json_path, result.to_dict())
    print_beir(result)
