"""The ``rag`` command line: a thin layer over the Python API.

Commands live by concern: :mod:`rag.cli.index` (ingest, stats, reset), :mod:`rag.cli.answer`
(ask, chat), :mod:`rag.cli.evaluate` (eval, eval-retrieval); the web UI and the health check
(serve, doctor) are here, with the group and the console script's entry point."""

from __future__ import annotations

import atexit
import gc
import sys
from pathlib import Path

import click

from rag.cli import answer, evaluate, index
from rag.cli.common import collection_option, index_option, reports_errors, settings_for


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rag-offline")
def main() -> None:
    """Offline, cited question answering over your documents."""


@click.command()
def doctor() -> None:
    """Check that embeddings, Chroma and the default LLM work offline."""
    from rag.doctor import run_checks

    sys.exit(0 if run_checks() else 1)


@click.command()
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

    settings = settings_for(
        host=host, port=port, index_dir=index_dir, collection=collection, llm=llm
    )
    launch(settings, insecure=insecure)


for command in (
    index.ingest,
    index.stats,
    index.reset,
    answer.ask,
    answer.chat,
    evaluate.eval_command,
    evaluate.eval_retrieval,
    doctor,
    serve,
):
    main.add_command(command)


def run() -> None:
    """The ``rag`` command (console script): ``main``, then a quick exit.

    The process is about to end, so the objects it made need no collecting: freezing them at
    exit spares the interpreter's shutdown collections, about 0.4 s of a cold ``rag ask`` on 2
    cores (destructors still run as modules are torn down; the memory goes with the process).
    Kept out of ``main`` so that callers in a long-lived process (tests, app.py's server) are
    not affected."""
    atexit.register(gc.freeze)
    main()
