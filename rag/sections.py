"""Section headings: where a document's headings are, and the heading path in effect at a place.

A sentence under "## Refuelling" of a fleet guide, or under "## A cappella" of a collection of
articles, says less on its own than with its section's name, as a Wikipedia sentence says less
without its article's title (which is what the reader was trained to read it after). The loaders
record each document's headings (``Heading``: markdown headings outside code fences, HTML
``h1``-``h6``, Word heading styles, PDF lines set larger than the body text, and in plain text
titles underlined as reStructuredText and many manuals write them; a plain short line cannot
be told apart from a heading, so it is not taken for one). ``section_paths`` turns them into the
path of headings in effect after each one ("Fleet guide › Refuelling" minus the document title,
which is read anyway); the chunker stores the path at a chunk's start and at every heading
inside it, and ``path_at`` looks one up.

This module depends on nothing else of ours; loaders and chunking import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SEPARATOR = " › "
MAX_DEPTH = 3  # the innermost headings kept in a path
MAX_PATH = 160  # characters; a longer path keeps its end (the innermost headings)

_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_NOT_HEADING = re.compile(r"^(?: {4,}|\t| {0,3}(?:[-*+>|]|\d+[.)])\s)")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Heading:
    """A heading line of a document's text: where it starts, its level (1 = top) and text."""

    start: int
    level: int
    text: str


# Inline markup a heading or title is read without (rag.sections.plain_heading).
_IMAGE = re.compile(r"!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])?")
_LINK = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])?")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_STRONG = re.compile(r"(?<![\w.])(\*\*|__)(?=\S)(.+?)(?<=\S)\1(?![\w.])")
_EMPHASIS = re.compile(r"(?<![\w*.])([*_])(?=[^\s*_])(.+?)(?<=[^\s*_])\1(?![\w*.])")


def plain_heading(text: str) -> str:
    """A markdown heading (or title) as a reader reads it: images (badges) dropped, links as
    their text, HTML tags, emphasis and code marks removed ("Controls [![Build](https://…)](…)"
    is "Controls"; "`watch` Usage" is "watch Usage"). Underscores inside words stay."""
    text = _LINK.sub(r"\1", _IMAGE.sub(" ", text))
    text = _EMPHASIS.sub(r"\2", _STRONG.sub(r"\2", _TAG.sub(" ", text)))
    return _SPACE.sub(" ", text.replace("`", "")).strip()


def markdown_title(text: str, headings: Sequence[Heading]) -> str:
    """The title of markdown ``text``: its first level-1 heading, else its first line outside
    code with words in it once markup is removed (a README that opens with an HTML logo block
    and badges), else ""."""
    for heading in headings:
        if heading.level == 1:
            return heading.text
    lines = text.splitlines()
    code = _fenced_lines(lines)
    for index, line in enumerate(lines):
        plain = plain_heading(line.strip().lstrip("#"))
        if index not in code and re.search(r"\w", plain) and not _SETEXT.match(line):
            return plain
    return ""


def markdown_headings(text: str) -> list[Heading]:
    """The headings of markdown ``text`` outside fenced code: ATX (``#`` to ``######``) and
    setext (a one-line paragraph underlined with ``===``, level 1, or ``---``, level 2), as
    plain text (``plain_heading``; one with nothing left, a row of badges, is none)."""
    headings: list[Heading] = []
    lines = text.splitlines(keepends=True)
    code = _fenced_lines([line.rstrip("\r\n") for line in lines])
    offset = 0
    after_blank = True  # the line before was blank (or this is the first line)
    candidate: tuple[int, str] | None = None  # a one-line paragraph so far: (offset, text)
    for index, line in enumerate(lines):
        bare = line.rstrip("\r\n")
        start, previous, opens = offset, candidate, after_blank
        offset += len(line)
        candidate, after_blank = None, not bare.strip()
        if index in code:
            continue
        underline = _SETEXT.match(bare)
        if underline and previous is not None:
            level = 1 if underline.group(1)[0] == "=" else 2
            if heading := plain_heading(previous[1]):
                headings.append(Heading(previous[0], level, heading))
            continue
        match = _ATX.match(bare)
        if match:
            if heading := plain_heading(match.group(2)):
                headings.append(Heading(start, len(match.group(1)), heading))
        elif bare.strip() and opens and not _NOT_HEADING.match(bare):
            candidate = (start, bare.strip())
    return headings


# A reStructuredText section adornment: one punctuation character repeated (3 or more).
_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
MAX_UNDERLINED = 100  # characters; a longer line over an adornment is not a title


def underlined_headings(text: str) -> list[Heading]:
    """The headings of plain ``text`` written as reStructuredText and many plain-text manuals
    write them: a one-line paragraph underlined (optionally also overlined) with one punctuation
    character repeated at least half the title's length ("Installation\n============"). As in
    reStructuredText, each adornment style (character, with or without an overline) takes the
    next level the first time it appears. Lines inside markdown code fences are not looked at,
    nor are indented ones (code or quotes), so a separator line under a paragraph's last line
    is not taken for a heading (the title must follow a blank line or an overline)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    bare = [line.rstrip("\r\n") for line in lines]
    code = _fenced_lines(bare)
    styles: list[tuple[str, bool]] = []
    headings: list[Heading] = []
    for i in range(1, len(bare)):
        underline = _ADORNMENT.match(bare[i])
        title = bare[i - 1]
        if not underline or i - 1 in code or i in code:
            continue
        heading = title.strip()
        if (
            not heading
            or title[:1].isspace()
            or len(heading) > MAX_UNDERLINED
            or _ADORNMENT.match(title)
            or not re.search(r"\w", heading)
            or len(bare[i].strip()) < len(heading) / 2
        ):
            continue
        over = i >= 2 and bare[i - 2].strip() == bare[i].strip()
        opener = i - 3 if over else i - 2
        if opener >= 0 and bare[opener].strip():
            continue  # not a paragraph of its own
        style = (underline.group(1), over)
        if style not in styles:
            styles.append(style)
        headings.append(Heading(starts[i - 1], min(styles.index(style) + 1, 6), heading))
    return headings


def _fenced_lines(lines: Sequence[str]) -> set[int]:
    """Indexes of the lines inside (or opening or closing) markdown code fences."""
    inside: set[int] = set()
    fence = ""
    for index, line in enumerate(lines):
        opening = _FENCE.match(line)
        if fence:
            inside.add(index)
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = ""
        elif opening:
            fence = opening.group(1)
            inside.add(index)
    return inside


def located(text: str, found: Iterable[tuple[int, str]]) -> list[Heading]:
    """Headings given in document order as (level, text) whose text the loader wrote as a line
    of ``text``: each is looked for from where the previous one was found (one not found as a
    whole line is left out)."""
    headings: list[Heading] = []
    position = 0
    for level, heading in found:
        heading = _SPACE.sub(" ", heading).strip()
        if not heading:
            continue
        words = r"[ \t]+".join(re.escape(word) for word in heading.split())
        match = re.compile(rf"^[ \t]*{words}[ \t]*$", re.MULTILINE).search(text, position)
        if match:
            headings.append(Heading(match.start(), level, heading))
            position = match.end()
    return headings


HEADING_SIZE = 1.1  # a PDF line set this many times larger than the body text is a heading
MAX_HEADING = 150  # characters; a longer run of large text is not a heading
_LEADERS = re.compile(r"(\.\s*){4,}")  # a table of contents' dot leaders


def headings_by_size(runs: Sequence[tuple[float, str]]) -> list[tuple[int, str]]:
    """(level, text) of the headings among a PDF's text runs ((font size, text), in reading
    order): the body size is the one most characters are set in; consecutive runs set at least
    ``HEADING_SIZE`` times larger, in one size, form a heading (levels by size, largest 1),
    unless long or a table of contents' entry. Typography, not wording: a PDF keeps no
    structure a loader could read, but its larger lines are what a reader sees as headings."""
    weight: dict[float, int] = {}
    for size, text in runs:
        weight[size] = weight.get(size, 0) + len(text.strip())
    if not weight:
        return []
    body = max(weight, key=lambda size: weight[size])
    found: list[tuple[float, str]] = []
    current: list[str] = []
    current_size = 0.0
    for size, text in [*runs, (0.0, "")]:
        large = size >= body * HEADING_SIZE
        if large and size == current_size:
            current.append(text)
            continue
        heading = _SPACE.sub(" ", "".join(current)).strip()
        if heading and len(heading) <= MAX_HEADING and not _LEADERS.search(heading):
            found.append((current_size, heading))
        current, current_size = ([text], size) if large else ([], 0.0)
    levels = {size: rank for rank, size in enumerate(sorted({s for s, _ in found}, reverse=True))}
    return [(levels[size] + 1, heading) for size, heading in found]


def section_paths(headings: Sequence[Heading], title: str) -> list[tuple[int, str]]:
    """(start of a heading, the path of headings in effect from there on) for each heading that
    changes the path, in order. A heading closes the open ones of its level and deeper; one
    whose text the document's title already holds ("Fares" under the title "Timetables and Fares
    2024") is left out of paths, as the title is read anyway."""
    own_title = _SPACE.sub(" ", title).strip().casefold()
    stack: list[tuple[int, str]] = []
    paths: list[tuple[int, str]] = []
    current = ""
    for heading in sorted(headings, key=lambda h: h.start):
        while stack and stack[-1][0] >= heading.level:
            stack.pop()
        if not _holds(own_title, heading.text.casefold()):
            stack.append((heading.level, heading.text))
        path = _joined([text for _, text in stack])
        if path != current:
            paths.append((heading.start, path))
            current = path
    return paths


def _holds(title: str, words: str) -> bool:
    """Does ``title`` hold ``words`` as whole words?"""
    return bool(re.search(rf"(?<!\w){re.escape(words)}(?!\w)", title))


def _joined(parts: list[str]) -> str:
    path = SEPARATOR.join(parts[-MAX_DEPTH:])
    return path if len(path) <= MAX_PATH else "…" + path[-(MAX_PATH - 1) :]


def path_at(paths: Sequence[tuple[int, str]], offset: int, before: str = "") -> str:
    """The path in effect at ``offset``: that of the last heading starting before it (a heading
    line itself is read under the path above it), else ``before``. ``paths`` is in order."""
    path = before
    for start, after in paths:
        if start >= offset:
            break
        path = after
    return path


def with_section(title: str, section: str) -> str:
    """A title with its section path ("Fleet guide › Refuelling"), or the title alone."""
    if not section:
        return title
    return f"{title}{SEPARATOR}{section}" if title else section
