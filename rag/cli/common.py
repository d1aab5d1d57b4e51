"""What the command modules share: settings, JSON and error output, common options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rag.config import RagError, Settings, load_settings


def settings_for(**overrides: Any) -> Settings:
    """Settings from the environment, with the options given on the command line."""
    return load_settings(**overrides)


def print_json(data: Any) -> None:
    """One JSON object on one line of stdout."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=None))


def error_line(message: str) -> None:
    """One error line on stderr."""
    click.echo(f"Error: {message}", err=True)


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors into one clear line on stderr and exit status 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RagError as error:
            error_line(str(error))
            sys.exit(1)
        except KeyboardInterrupt:
            error_line("interrupted; run the command again to finish (nothing is lost)")
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


class ProgressBar:
    """A transient rich progress bar on stderr (label, bar, done/total, time, a detail line);
    a no-op when disabled."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
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
            self._progress.update(self._task, completed=done, total=total, current=current)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
