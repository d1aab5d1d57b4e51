"""Code blocks: where a document's code is, so that its lines are read as lines.

A README's ``pip install x`` or ``rag serve  # the web UI`` is the answer to "how do I ...?",
but prose rules read code badly: a line without final punctuation followed by one starting in
lower case looks like a hard-wrapped sentence, so a block of commands became one long
"sentence", and its fence line (```` ```bash ````) a word of it. The loaders record each code
block's span (markdown and plain-text fences, HTML ``<pre>``); the chunker keeps them per chunk,
``rag.chunking.sentence_spans`` makes every line inside one its own span, and the reader scores a
block's lines together as one candidate, never its fence lines.

This module depends on nothing else of ours; loaders, chunking and reading import it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")

# Markers put around an HTML <pre> before its text is extracted, removed after (private-use
# code points: never in real text, and not whitespace, so line clean-up keeps them).
PRE_OPEN = "\ue000"
PRE_CLOSE = "\ue001"


def fenced_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of each fenced code block of markdown ``text``, fence lines included (an
    unclosed fence runs to the end, as in CommonMark). Fences may be indented (code in a list
    item); a closing fence is the opening's character, at least as long, with nothing after."""
    blocks: list[tuple[int, int]] = []
    opening: tuple[int, str] | None = None  # (start, fence) of the open block
    offset = 0
    for line in text.splitlines(keepends=True):
        start, bare = offset, line.rstrip("\r\n")
        offset += len(line)
        match = _FENCE.match(bare)
        if match is None:
            continue
        fence, rest = match.group(1), match.group(2)
        if opening is None:
            if fence[0] == "`" and "`" in rest:
                continue  # ```inline``` code in a line, not a fence (CommonMark)
            opening = (start, fence)
        elif fence[0] == opening[1][0] and len(fence) >= len(opening[1]) and not rest.strip():
            blocks.append((opening[0], start + len(bare)))
            opening = None
    if opening is not None:
        blocks.append((opening[0], len(text.rstrip())))
    return blocks


def is_fence(line: str) -> bool:
    """Is ``line`` a code fence (```` ``` ````, ```` ```python ````, ``~~~``)?"""
    return _FENCE.match(line) is not None


def take_pre_markers(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` without the PRE_OPEN/PRE_CLOSE markers, and the (start, end) span each marked
    block's text has there (blank blocks left out)."""
    blocks: list[tuple[int, int]] = []
    pieces: list[str] = []
    length = 0
    opened: int | None = None
    for piece in re.split(f"([{PRE_OPEN}{PRE_CLOSE}])", text):
        if piece == PRE_OPEN:
            opened = length if opened is None else opened  # nested <pre>: the outer one counts
        elif piece == PRE_CLOSE:
            if opened is not None and length > opened:
                blocks.append((opened, length))
            opened = None
        else:
            pieces.append(piece)
            length += len(piece)
    text = "".join(pieces)
    spans = []
    for a, b in blocks:  # whitespace around a block's text is not code
        start = a + len(text[a:b]) - len(text[a:b].lstrip())
        end = start + len(text[a:b].strip())
        if start < end:
            spans.append((start, end))
    return text, spans


def clip(blocks: Sequence[tuple[int, int]], start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The parts of ``blocks`` inside ``start:end``, as offsets from ``start``."""
    return tuple(
        (max(a, start) - start, min(b, end) - start) for a, b in blocks if a < end and b > start
    )


def inside(blocks: Sequence[tuple[int, int]], offset: int) -> tuple[int, int] | None:
    """The block holding ``offset``, or None."""
    for a, b in blocks:
        if a <= offset < b:
            return a, b
    return None
