"""HTML for the chat UI: answers, sources, refusals, errors, index stats, ingest reports.

Everything that comes from a document, a file name, a model or a user goes through
:func:`escape` before it is put in a page: HTML special characters *and* the characters that
Markdown, autolinks or LaTeX would act on become numeric entities, and newlines become ``<br>``.
Each fragment is one line of HTML starting with ``<div``, so the chat's Markdown renderer passes
it through as an HTML block and never parses what is inside it. The browser shows the text
exactly as written; nothing in it can run, link or format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rag import markers
from rag.codeblocks import fenced_blocks, is_fence

# Characters that start markup in HTML, Markdown (incl. GFM autolinks, tables, strikethrough)
# or the LaTeX renderer. Each becomes a numeric character reference.
_SPECIAL = frozenset("&<>\"'`*_[](){}#!|~$\\:=+-@^%")
_NEWLINES = re.compile(r"\r\n|\r|\n|\u2028|\u2029")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_TITLE_CHARS = 100
CONTEXT_CHARS = 400  # passage text shown on each side of a highlighted quote


def escape(text: Any) -> str:
    """Inert HTML for ``text``: shown literally, never interpreted (see the module docstring)."""
    value = _CONTROL.sub("\N{REPLACEMENT CHARACTER}", "" if text is None else str(text))
    lines = _NEWLINES.split(value)
    return "<br>".join(
        "".join(f"&#{ord(char)};" if char in _SPECIAL else char for char in line) for line in lines
    )


def _div(css_class: str, inner: str) -> str:
    return f'<div class="{css_class}">{inner}</div>'


def answer_html(answer: Any) -> str:
    """An answer (``rag.answer.Answer``): its sentences with ``[n]`` markers, and a footer line."""
    if answer.refused:
        return refusal_html(answer)
    mode = getattr(answer, "mode", "")
    how = "quoted from the documents" if mode == "extractive" else "checked against the sources"
    seconds = getattr(getattr(answer, "timings", None), "total_s", 0.0) or 0.0
    took = f"{seconds:.1f} s" if seconds >= 0.1 else "< 0.1 s"
    footer = f"{escape(answer.llm)} · {how} · {took}"
    body = _with_markers(answer.answer)
    return _div(
        "rag-answer",
        body
        + _div("rag-meta", footer + ACTIONS)
        + understood_html(answer)
        + _div("rag-copytext", escape(copy_text(answer))),
    )


# Copy and Regenerate under each answer: inert text, acted on by the page's script (rag.ui.assets).
# Only the newest answer keeps Regenerate (the conversation removes it from older ones).
REGENERATE = '<span class="rag-action rag-regen">Regenerate</span>'
ACTIONS = (
    f'<span class="rag-actions"><span class="rag-action rag-copy">Copy</span>{REGENERATE}</span>'
)


def copy_text(answer: Any) -> str:
    """What Copy puts on the clipboard: the answer with its [n], then each source and quote."""
    lines = [answer.answer]
    if answer.citations:
        lines += ["", "Sources:"]
        for citation in answer.citations:
            lines.append(f'[{citation.n}] {citation.location()}: "{citation.quote}"')
    return "\n".join(lines)


def understood_html(answer: Any) -> str:
    """How a follow-up was read, when it was rewritten using the conversation."""
    standalone = getattr(answer, "standalone_question", "") or ""
    if not standalone or standalone.strip() == (answer.question or "").strip():
        return ""
    return _div("rag-meta rag-understood", "understood as: " + escape(standalone))


def refusal_html(answer: Any) -> str:
    """A refusal: clearly marked as 'not in the documents', with the reason."""
    return _div(
        "rag-refusal",
        '<span class="rag-refusal-label">Not in the documents</span>'
        + _div("rag-refusal-text", escape(answer.answer))
        + _div("rag-meta", ACTIONS)
        + understood_html(answer)
        + _div("rag-copytext", escape(answer.answer)),
    )


def error_html(message: str) -> str:
    """A problem answering (index unavailable, bad question): one clear line, no traceback."""
    return _div(
        "rag-error", '<span class="rag-error-label">Could not answer</span> ' + escape(message)
    )


STAGES = {
    "searching": "Searching the documents…",
    "writing": "Writing the answer — each sentence is checked against the sources before it "
    "is shown…",
}


def pending_html(stage: str = "searching") -> str:
    """Before the first checked sentence: what is happening (no unchecked text is shown)."""
    return _div("rag-pending", escape(STAGES.get(stage, STAGES["searching"])))


def _with_markers(text: str) -> str:
    """Answer text as inert HTML: ``[n]`` markers as citation links, code the answer quotes
    (a fenced block, or `inline`) as code; everything else escaped."""
    parts: list[str] = []
    cursor = 0
    for start, end in fenced_blocks(text):
        parts.append(_prose_with_markers(text[cursor:start].rstrip("\n")))  # <pre> is a block
        lines = text[start:end].split("\n")[1:]
        if lines and is_fence(lines[-1]):
            lines = lines[:-1]
        code = escape("\n".join(lines))
        parts.append(f'<pre class="rag-code"><code>{code}</code></pre>')
        cursor = end + 1 if text[end : end + 1] == "\n" else end
    parts.append(_prose_with_markers(text[cursor:]))
    return "".join(parts)


_INLINE_CODE = re.compile(r"`([^`\n]+)`")


def _prose_with_markers(text: str) -> str:
    parts: list[str] = []
    cursor = 0
    for match in markers.SINGLE.finditer(text):
        parts.append(_inline_code(text[cursor : match.start()]))
        parts.append(f'<sup class="rag-cite">[{int(match.group(1))}]</sup>')
        cursor = match.end()
    parts.append(_inline_code(text[cursor:]))
    return "".join(parts)


def _inline_code(text: str) -> str:
    parts: list[str] = []
    cursor = 0
    for match in _INLINE_CODE.finditer(text):
        parts.append(escape(text[cursor : match.start()]))
        parts.append(f'<code class="rag-code">{escape(match.group(1))}</code>')
        cursor = match.end()
    parts.append(escape(text[cursor:]))
    return "".join(parts)


def partial_html(checked: str) -> str:
    """The checked sentences so far (each passed before it is shown; more may follow)."""
    return _div("rag-partial", _with_markers(checked))


def queued_html() -> str:
    """A question waiting for the one being answered before it."""
    return _div("rag-queued", "Queued — answered after the question above")


def source_label(citation: Any) -> str:
    """'file name · Section › Subsection · page 3 · chunk 2 · chars 120-240' (escaped; chunks
    counted from 1; the section where the document has headings)."""
    bits = [f"<b>{escape(citation.source)}</b>"]
    section = getattr(citation, "section", "") or ""
    if section:
        bits.append(escape(section))
    if citation.page is not None:
        bits.append(f"page {int(citation.page)}")
    index = getattr(citation, "chunk_index", None)
    chunk = f"chunk {int(index) + 1}" if index is not None else "chunk"
    bits.append(chunk)
    bits.append(f"chars {int(citation.start)}–{int(citation.end)}")
    return " · ".join(bits)


def highlighted_chunk(citation: Any) -> str:
    """The citation's chunk text with the supporting quote marked (all escaped); context longer
    than CONTEXT_CHARS on either side is trimmed so the quote is always in view."""
    text: str = getattr(citation, "chunk_text", "") or ""
    quote: str = citation.quote
    if not text:
        return f"<mark>{escape(quote)}</mark>"
    local = int(citation.start) - int(getattr(citation, "chunk_start", 0))
    if not (local >= 0 and text[local : local + len(quote)] == quote):
        local = text.find(quote) if quote else -1
    if local < 0:
        return escape(text) + '<div class="rag-quote"><mark>' + escape(quote) + "</mark></div>"
    end = local + len(quote)
    before, after = text[:local], text[end:]
    if len(before) > CONTEXT_CHARS:  # keep the quote in view: trim long context at a word
        cut = before.find(" ", len(before) - CONTEXT_CHARS)
        before = "… " + before[cut + 1 if cut >= 0 else len(before) - CONTEXT_CHARS :]
    if len(after) > CONTEXT_CHARS:
        cut = after.rfind(" ", 0, CONTEXT_CHARS)
        after = after[: cut if cut > 0 else CONTEXT_CHARS] + " …"
    return escape(before) + f"<mark>{escape(quote)}</mark>" + escape(after)


def sources_html(citations: Iterable[Any]) -> str:
    """Every cited source: its label, and the quote highlighted inside its chunk."""
    items = []
    for citation in citations:
        title = (getattr(citation, "title", "") or "").strip()
        # A real title (a heading, PDF metadata), not a plain-text file's first paragraph.
        shown = title and len(title) <= MAX_TITLE_CHARS and title != citation.source.strip()
        title_html = _div("rag-source-title", escape(title)) if shown else ""
        items.append(
            '<div class="rag-source">'
            f'<div class="rag-source-head"><span class="rag-source-n">[{int(citation.n)}]</span> '
            f"{source_label(citation)}</div>{title_html}"
            f'<div class="rag-chunk">{highlighted_chunk(citation)}</div></div>'
        )
    return _div("rag-sources", "".join(items))


def passages_html(retrieved: Iterable[Any], limit: int = 3, chars: int = 400) -> str:
    """The closest passages a refusal looked at (shortened), for the user to check."""
    items = []
    for info in list(retrieved)[:limit]:
        text = info.text if len(info.text) <= chars else info.text[:chars].rstrip() + " …"
        items.append(
            '<div class="rag-source">'
            f'<div class="rag-source-head"><b>{escape(info.source)}</b></div>'
            f'<div class="rag-chunk">{escape(text)}</div></div>'
        )
    return _div("rag-sources", "".join(items))


def user_html(question: str) -> str:
    """The user's own message, shown exactly as typed."""
    return _div("rag-question", escape(question))


def stats_html(stats: dict[str, Any] | None, llm: str, error: str | None = None) -> str:
    """The side panel's index summary and sources list."""
    if error is not None:
        return _div("rag-stats", _div("rag-error", escape(error)))
    assert stats is not None
    sources = stats.get("sources") or []
    documents, chunks = int(stats.get("documents", 0)), int(stats.get("chunks", 0))
    rows = (
        f"<b>{documents}</b> document{'' if documents == 1 else 's'} · "
        f"<b>{chunks}</b> chunk{'' if chunks == 1 else 's'}"
    )
    details = (
        f"collection {escape(stats.get('collection', ''))} ({escape(stats.get('store', ''))})"
        f"<br>answers: {escape(llm)}"
        f"<br>embeddings: {escape(stats.get('embedding_model', ''))}"
    )
    if sources:
        listing = "".join(f"<li>{escape(source)}</li>" for source in sources)
        source_block = f'<ul class="rag-source-list">{listing}</ul>'
    else:
        source_block = _div("rag-empty", "The index is empty: upload files below.")
    return _div("rag-stats", _div("rag-counts", rows) + _div("rag-meta", details) + source_block)


def ingest_html(
    report: dict[str, Any] | None,
    refused: Iterable[tuple[str, str]] = (),
    stored: Iterable[str] = (),
    heading: str = "Upload",
) -> str:
    """What an upload or re-index did: counts, then one line per refused or failed file."""
    refused = list(refused)
    lines: list[str] = []
    failed = list(report.get("failed", [])) if report else []
    if report is not None:
        lines.append(
            _div(
                "rag-ok" if not failed else "rag-warn",
                f"{escape(heading)}: {int(report['added'])} added, {int(report['updated'])} "
                f"updated, {int(report['unchanged'])} unchanged"
                + (f", {int(report['deleted'])} removed" if report.get("deleted") else "")
                + f", {len(failed)} failed · {_count(int(report['chunks_written']), 'chunk')} "
                f"written in {float(report['seconds']):.1f} s",
            )
        )
    elif refused:
        lines.append(_div("rag-warn", f"{escape(heading)}: nothing indexed"))
    else:
        lines.append(_div("rag-meta", f"{escape(heading)}: nothing to do"))
    stored_names = [str(name) for name in stored]
    if stored_names:
        lines.append(_div("rag-meta", "indexed: " + ", ".join(escape(n) for n in stored_names)))
    problems = [(name, reason) for name, reason in refused] + [
        (str(item.get("path", "")), str(item.get("error", ""))) for item in failed
    ]
    if problems:
        listing = "".join(
            f"<li><b>{escape(name)}</b>: {escape(reason)}</li>" for name, reason in problems
        )
        lines.append(f'<div class="rag-error"><ul class="rag-problems">{listing}</ul></div>')
    return _div("rag-ingest", "".join(lines))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
