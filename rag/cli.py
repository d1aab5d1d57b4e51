"""The ``rag`` command line: a thin layer over the Python API."""

from __future__ import annotations

import atexit
import functools
import gc
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rag.config import RagError, Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=None))


def _err(message: str) -> None:
    click.echo(f"Error: {message}", err=True)


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one clear line on stderr and exit status 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagError as error:
            _err(str(error))
            sys.exit(1)
        except KeyboardInterrupt:
            _err("interrupted; run the command again to finish (nothing is lost)")
            sys.exit(130)

    return wrapper


index_option = click.option(
    "--index",
    "index_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Index folder (RAG_INDEX_DIR; default: index/).",
)
collection_option = click.option(
    "--collection", default=None, help="Collection name (RAG_COLLECTION; default: documents)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rag-offline")
def main() -> None:
    """Offline, cited question answering over your documents."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@index_option
@collection_option
@json_option
@click.option(
    "--prune/--no-prune",
    default=True,
    show_default=True,
    help="Delete files that disappeared from an ingested folder.",
)
@click.option("--chunk-size", type=int, default=None, help="Chunk size in characters.")
@click.option("--chunk-overlap", type=int, default=None, help="Chunk overlap in characters.")
@reports_errors
def ingest(
    paths: tuple[Path, ...],
    index_dir: Path | None,
    collection: str | None,
    as_json: bool,
    prune: bool,
    chunk_size: int | None,
    chunk_overlap: int | None,
) -> None:
    """Index files and folders (txt, md, html, pdf, docx), incrementally."""
    from rag.ingest import ingest as run_ingest

    settings = _settings(
        index_dir=index_dir,
        collection=collection,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
    )
    show_progress = not as_json and sys.stderr.isatty()
    with _IngestProgressBar(enabled=show_progress) as bar:
        report = run_ingest(list(paths), settings, prune=prune, progress=bar.update)
    if as_json:
        _print_json(report.to_dict())
    else:
        for failure in report.failed:
            click.echo(f"failed: {_one_line(failure.path)}: {failure.error}", err=True)
        if report.skipped:
            click.echo(f"skipped {len(report.skipped)} path(s):", err=True)
            for path, reason in report.skipped[:20]:
                click.echo(f"  {_one_line(path)}: {reason}", err=True)
        click.echo(
            f"files: {report.added} added, {report.updated} updated, {report.unchanged} "
            f"unchanged, {report.deleted} deleted, {len(report.failed)} failed; "
            f"{report.chunks_written} chunks written in {report.seconds:.1f}s"
        )
    sys.exit(0 if report.ok else 1)


def _one_line(path: str) -> str:
    """A path as one printable line (a file name may hold newlines or other control chars)."""
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        return json.dumps(path, ensure_ascii=False)[1:-1]
    return path


class _IngestProgressBar:
    """A rich progress bar over files, showing chunks written; a no-op when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _IngestProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("[bold]ingest"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files · {task.fields[chunks]} chunks · {task.fields[current]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("ingest", total=None, chunks=0, current="")
        return self

    def update(self, event: Any) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                total=event.files_total,
                completed=event.files_done,
                chunks=event.chunks_written,
                current=event.current[-40:],
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@main.command()
@index_option
@collection_option
@json_option
@reports_errors
def stats(index_dir: Path | None, collection: str | None, as_json: bool) -> None:
    """Show what the index holds."""
    from rag.ingest import index_stats

    data = index_stats(_settings(index_dir=index_dir, collection=collection))
    if as_json:
        _print_json(data)
        return
    click.echo(f"collection: {data['collection']} ({data['store']})")
    click.echo(f"documents:  {data['documents']}")
    click.echo(f"chunks:     {data['chunks']}")
    click.echo(f"embedding:  {data['embedding_model']}")
    for source in data["sources"]:
        click.echo(f"  - {source}")


@main.command()
@index_option
@collection_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def reset(index_dir: Path | None, collection: str | None, yes: bool) -> None:
    """Delete the collection (everything ingested into it)."""
    from rag.ingest import reset_index

    settings = _settings(index_dir=index_dir, collection=collection)
    where = settings.chroma_url or str(settings.index_dir)
    if not yes:
        click.confirm(
            f"Delete collection '{settings.collection}' at {where}?", abort=True, err=True
        )
    existed = reset_index(settings)
    click.echo(f"deleted collection '{settings.collection}'" if existed else "nothing to delete")


@main.command()
@click.argument("question")
@index_option
@collection_option
@json_option
@click.option("--llm", default=None, help="LLM backend (RAG_LLM): local, extractive, gguf:…, …")
@click.option("--k", type=click.IntRange(1, 50), default=None, help="Chunks to answer from.")
@click.option("--source", "sources", multiple=True, help="Only use these sources (repeatable).")
@reports_errors
def ask(
    question: str,
    index_dir: Path | None,
    collection: str | None,
    as_json: bool,
    llm: str | None,
    k: int | None,
    sources: tuple[str, ...],
) -> None:
    """Answer a question from the indexed documents, with numbered sources."""
    from rag.answer import RAG

    settings = _settings(index_dir=index_dir, collection=collection, llm=llm, k=k)
    bot = RAG(settings)
    answer = bot.ask(question, sources=list(sources) or None)
    if as_json:
        _print_json(answer.to_dict())
        return
    click.echo(answer.answer)
    _print_sources(answer)


def _print_sources(answer: Any) -> None:
    if not answer.citations:
        return
    click.echo("\nSources:")
    for citation in answer.citations:
        page = f", page {citation.page}" if citation.page is not None else ""
        quote = citation.quote if len(citation.quote) <= 300 else citation.quote[:297] + "..."
        click.echo(f'  [{citation.n}] {citation.source}{page}: "{quote}"')


@main.command()
@index_option
@collection_option
@click.option("--llm", default=None, help="LLM backend (RAG_LLM).")
@click.option("--k", type=click.IntRange(1, 50), default=None, help="Chunks to answer from.")
@reports_errors
def chat(index_dir: Path | None, collection: str | None, llm: str | None, k: int | None) -> None:
    """A conversation in the terminal. Commands: /help, /sources, /reset, /quit."""
    from rag.answer import RAG, QuestionError

    settings = _settings(index_dir=index_dir, collection=collection, llm=llm, k=k)
    bot = RAG(settings)
    history: list[tuple[str, str]] = []
    last = None
    click.echo("Ask about your documents. /help lists the commands.")
    while True:
        try:
            question = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo()
            return
        command = question.strip().lower()
        if command in ("/quit", "/exit"):
            return
        if command in ("/help", "/?"):
            click.echo(CHAT_HELP)
            continue
        if command == "/reset":
            history.clear()
            last = None
            click.echo("(conversation cleared)")
            continue
        if command == "/sources":
            if last is None or not last.citations:
                click.echo("(no sources yet)")
            else:
                _print_sources(last)
            continue
        if command.startswith("/"):
            click.echo(f"(unknown command {command.split()[0]}; /help lists them)")
            continue
        if not command:
            continue
        shown = ""
        answer = None
        try:
            click.echo("bot> ", nl=False)
            # Only checked sentences are printed, as each passes; a refusal when none does.
            for event in bot.stream(question, history):
                if event.kind == "sentence":
                    shown += event.text
                    click.echo(event.text, nl=False)
                elif event.answer is not None:
                    answer = event.answer
        except QuestionError as error:
            click.echo(f"({error})")
            continue
        except KeyboardInterrupt:  # Ctrl-C stops this answer; a second one at the prompt quits
            click.echo(" (stopped)")
            continue
        if answer is not None:
            last = answer
            if not shown:
                click.echo(answer.answer, nl=False)
            click.echo()
            history.append((question, answer.answer))


CHAT_HELP = """Commands:
  /sources   the last answer's sources, with the exact quotes
  /reset     start a new conversation (forget the previous questions)
  /help      this list
  /quit      leave (or Ctrl-D; Ctrl-C stops an answer, and quits at the prompt)
Anything else is a question; follow-ups ("and in 2023?") are read in the conversation's context."""


@main.command()
def doctor() -> None:
    """Check that embeddings, Chroma and the default LLM work offline."""
    from rag.doctor import run_checks

    sys.exit(0 if run_checks() else 1)


@main.command()
@click.option("--host", default=None, help="Address to bind (RAG_HOST; default: 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (RAG_PORT; 7860).")
@click.option(
    "--insecure", is_flag=True, help="Allow a non-loopback bind without a login (RAG_AUTH)."
)
@index_option
@collection_option
@click.option("--llm", default=None, help="Default LLM backend (RAG_LLM).")
@reports_errors
def serve(
    host: str | None,
    port: int | None,
    insecure: bool,
    index_dir: Path | None,
    collection: str | None,
    llm: str | None,
) -> None:
    """Start the web UI (chat with cited answers, uploads, index panel; API endpoint /ask)."""
    from rag.ui import launch

    settings = _settings(host=host, port=port, index_dir=index_dir, collection=collection, llm=llm)
    launch(settings, insecure=insecure)


# Evaluation: rag eval, rag eval-retrieval ----------------------------------------------------


def _bounds_callback(kind: str) -> Callable[..., Any]:
    """Validate --fail-under/--fail-over values early (bad metric names exit 2)."""

    def callback(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
        from rag.evaluation import parse_bounds

        try:
            return parse_bounds(values, kind)  # type: ignore[arg-type]
        except ValueError as error:
            raise click.BadParameter(str(error), ctx=ctx, param=param) from None

    return callback


class _CountingProgressBar:
    """A transient rich progress bar on stderr; a no-op when disabled."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _CountingProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn(f"[bold]{self.label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[current]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=None, current="")
        return self

    def update(self, done: int, total: int, current: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total, current=current[-40:])

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _write_json_file(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


@main.command("eval")
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

    settings = _settings(index_dir=index_dir, collection=collection, llm=llm, k=k)
    questions = load_question_set(question_set)
    previous = load_run(compare_path) if compare_path else None
    bot = RAG(settings)
    with _CountingProgressBar("eval", enabled=sys.stderr.isatty()) as bar:
        run = run_evaluation(
            questions,
            bot,
            k=k,
            llm=llm,
            set_path=str(question_set),
            on_item=lambda done, total, item: bar.update(done, total, item.id),
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
        _err(f"gate failed: {problem}")
    sys.exit(1 if problems else 0)


@main.command("eval-retrieval")
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

    settings = _settings(index_dir=index_dir)
    with _CountingProgressBar("eval-retrieval", enabled=sys.stderr.isatty()) as bar:
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


def run() -> None:
    """The ``rag`` command (console script): ``main``, then a quick exit.

    The process is about to end, so the objects it made need no collecting: freezing them at
    exit spares the interpreter's shutdown collections, about 0.4 s of a cold ``rag ask`` on 2
    cores (destructors still run as modules are torn down; the memory goes with the process).
    Kept out of ``main`` so that callers in a long-lived process (tests, app.py's server) are
    not affected."""
    atexit.register(gc.freeze)
    main()


if __name__ == "__main__":  # pragma: no cover
    run()
