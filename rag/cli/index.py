"""``rag ingest``, ``rag stats`` and ``rag reset``: what the index holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rag.cli.common import (
    ProgressBar,
    collection_option,
    index_option,
    json_option,
    print_json,
    reports_errors,
    settings_for,
)


@click.command()
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
    """Index files and folders (txt, md, rst, html, pdf, docx), incrementally."""
    from rag.ingest import ingest as run_ingest

    settings = settings_for(
        index_dir=index_dir,
        collection=collection,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
    )
    show_progress = not as_json and sys.stderr.isatty()
    with ProgressBar("ingest", enabled=show_progress) as bar:
        report = run_ingest(
            list(paths),
            settings,
            prune=prune,
            progress=lambda event: bar.update(
                event.files_done,
                event.files_total,
                f"files · {event.chunks_written} chunks · {event.current[-40:]}",
            ),
        )
    if as_json:
        print_json(report.to_dict())
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


@click.command()
@index_option
@collection_option
@json_option
@reports_errors
def stats(index_dir: Path | None, collection: str | None, as_json: bool) -> None:
    """Show what the index holds."""
    from rag.ingest import index_stats

    data = index_stats(settings_for(index_dir=index_dir, collection=collection))
    if as_json:
        print_json(data)
        return
    click.echo(f"collection: {data['collection']} ({data['store']})")
    click.echo(f"documents:  {data['documents']}")
    click.echo(f"chunks:     {data['chunks']}")
    click.echo(f"embedding:  {data['embedding_model']}")
    for source in data["sources"]:
        click.echo(f"  - {source}")


@click.command()
@index_option
@collection_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def reset(index_dir: Path | None, collection: str | None, yes: bool) -> None:
    """Delete the collection (everything ingested into it)."""
    from rag.ingest import reset_index

    settings = settings_for(index_dir=index_dir, collection=collection)
    where = settings.chroma_url or str(settings.index_dir)
    if not yes:
        click.confirm(
            f"Delete collection '{settings.collection}' at {where}?", abort=True, err=True
        )
    existed = reset_index(settings)
    click.echo(f"deleted collection '{settings.collection}'" if existed else "nothing to delete")
