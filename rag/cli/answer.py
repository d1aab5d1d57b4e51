"""``rag ask`` and ``rag chat``: answers with their sources, in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rag.cli.common import (
    collection_option,
    index_option,
    json_option,
    print_json,
    reports_errors,
    settings_for,
)


@click.command()
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

    settings = settings_for(index_dir=index_dir, collection=collection, llm=llm, k=k)
    bot = RAG(settings)
    answer = bot.ask(question, sources=list(sources) or None)
    if as_json:
        print_json(answer.to_dict())
        return
    click.echo(answer.answer)
    _print_sources(answer)


def _print_sources(answer: Any) -> None:
    if not answer.citations:
        return
    click.echo("\nSources:")
    for citation in answer.citations:
        quote = citation.quote if len(citation.quote) <= 300 else citation.quote[:297] + "..."
        click.echo(f'  [{citation.n}] {citation.location()}: "{quote}"')


@click.command()
@index_option
@collection_option
@click.option("--llm", default=None, help="LLM backend (RAG_LLM).")
@click.option("--k", type=click.IntRange(1, 50), default=None, help="Chunks to answer from.")
@reports_errors
def chat(index_dir: Path | None, collection: str | None, llm: str | None, k: int | None) -> None:
    """A conversation in the terminal. Commands: /help, /sources, /reset, /quit."""
    from rag.answer import RAG, QuestionError

    settings = settings_for(index_dir=index_dir, collection=collection, llm=llm, k=k)
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
