"""Chunking: split a document's text into overlapping chunks with exact character offsets.

Why not a LangChain text splitter: those rebuild chunk text from pieces and recover offsets
with ``str.find``, which drifts when whitespace is normalised or text repeats. Citations here
point at exact spans, so every chunk is a slice ``text[start:end]`` of the source text, cut
at sentence, line or (for very long sentences) word boundaries.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from rag.codeblocks import clip
from rag.loaders import LoadedDocument
from rag.sections import section_paths, with_section

# 4: chunks cut mid-table keep their table's header (table_header); 5: chunks keep their
# section headings' paths (section, sections), and the section is embedded with the title;
# 6: a code block's lines are units of their own, and chunks keep their code blocks (code);
# 7: a line ending in a comma or in a word like "the", "with" or "and" goes on in the next one;
# PDF text has its line-break hyphens and ligatures undone, HTML its <nav> menus left out
# (rag.loaders); 8: plain-text files have section headings where a title is underlined
# ("Usage\n-----", rag.sections.underlined_headings); markdown titles and headings are plain
# text (badges, links, HTML and code marks removed; a title is never a code comment), and a
# markdown file's front matter gives its title and is not text
CHUNKER_VERSION = "8"

# A boundary after sentence-final punctuation (optionally closed by quotes/brackets) followed
# by whitespace, or at any line break.
_BOUNDARY = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n+")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a document; ``text == document.text[start:end]``."""

    id: str
    text: str
    source: str
    title: str
    page: int | None
    start: int
    end: int
    index: int
    content_hash: str
    table_header: str | None = None  # the header row of a table this chunk starts inside
    section: str = ""  # the heading path in effect where the chunk starts (rag.sections)
    # (offset in the chunk, path from there on) for each heading line inside the chunk
    sections: tuple[tuple[int, str], ...] = ()
    code: tuple[tuple[int, int], ...] = ()  # (start, end) in the chunk of its code (rag.codeblocks)

    @property
    def search_text(self) -> str:
        """What is embedded and keyword-indexed (``search_text``)."""
        return search_text(self.title, self.text, self.section)


def search_text(title: str, text: str, section: str = "") -> str:
    """What is embedded and keyword-indexed for a chunk: its document title and the section it
    starts in ("Fleet guide › Refuelling"), then the chunk; the chunk alone when it starts with
    that line already."""
    heading = with_section(title, section)
    if not heading or text.startswith(heading):
        return text
    return f"{heading}\n{text}"


# Words whose trailing period does not end a sentence ("Co. Ltd.", "Dr. Smith", "U.S. policy").
# fmt: off
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "co", "corp", "inc", "ltd", "llc", "plc",
    "dept", "univ", "gov", "gen", "col", "lt", "sgt", "capt", "vs", "etc", "e.g", "i.e", "cf",
    "al", "fig", "figs", "eq", "no", "nos", "vol", "pp", "approx", "ca", "est", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mt", "ft", "rev",
    "u.s", "u.k", "u.n", "e.u",
})
# fmt: on
_LAST_WORD = re.compile(r"([^\W\d_][\w.]*)\.$")


def _ends_with_abbreviation(text: str, end: int) -> bool:
    """Is the period at text[end-1] part of an abbreviation or an initial ("J. Smith")?"""
    match = _LAST_WORD.search(text, max(0, end - 12), end)
    if match is None:
        return False
    word = match.group(1).lower()
    return word in ABBREVIATIONS or len(word) == 1


_LINE_START_BLOCK = re.compile(r"\s*([-*•+>|#]|\d+[.)]\s|[A-Za-z][.)]\s)")
WRAP_MIN_LINE = 40
# A line ending in a comma or in one of these words is a sentence going on, whatever the next
# line starts with ("... using the\n`register(module)` API:"): no heading, label or sentence
# ends in an article, a preposition or a conjunction.
# fmt: off
_CONTINUING_WORDS = frozenset({
    "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "from", "with", "without",
    "into", "onto", "via", "than", "and", "or", "nor", "but", "that", "which", "whose", "if",
    "is", "are", "was", "were", "be",
})
# fmt: on
_LAST_LINE_WORD = re.compile(r"(\w+)$")


def _is_wrapped_line(text: str, newline: int, end: int) -> bool:
    """Is the single line break at ``newline`` a hard wrap inside a sentence (PDF text, wrapped
    plain text) rather than the end of a heading, list item or table row?"""
    line_start = text.rfind("\n", 0, newline) + 1
    line = text[line_start:newline].rstrip()
    next_end = text.find("\n", newline + 1, end)
    following = text[newline + 1 : next_end if next_end != -1 else end]
    if not line or not following.strip() or line[-1] in ".!?…:;|":
        return False
    if _LINE_START_BLOCK.match(following) or " | " in line:
        return False
    if line[-1] == "," or _ends_continuing(line):
        return True
    if following.lstrip()[:1].islower():
        return True
    return len(line) >= WRAP_MIN_LINE and not _looks_like_heading(following)


def _ends_continuing(line: str) -> bool:
    """Does ``line`` end in a word no sentence or heading ends in ("the", "with", "and")?"""
    match = _LAST_LINE_WORD.search(line)
    return match is not None and match.group(1) in _CONTINUING_WORDS


def _looks_like_heading(line: str) -> bool:
    """A short line without final punctuation (a title, heading or label)."""
    stripped = line.strip()
    return len(stripped) < WRAP_MIN_LINE and stripped[-1:] not in ".!?…,;"


def sentence_spans(
    text: str,
    start: int = 0,
    end: int | None = None,
    code: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """Sentence and line spans of ``text[start:end]``, whitespace-trimmed, offsets into text.
    Inside ``code`` (sorted (start, end) spans of code blocks, rag.codeblocks) every line is a
    span of its own: code is neither wrapped prose nor cut at its periods."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cursor = start
    for block_start, block_end in code:
        block_start, block_end = max(block_start, start), min(block_end, end)
        if block_start >= block_end or block_start < cursor:
            continue
        spans.extend(_prose_spans(text, cursor, block_start))
        spans.extend(_line_spans(text, block_start, block_end))
        cursor = block_end
    spans.extend(_prose_spans(text, cursor, end))
    return spans


def _line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The lines of ``text[start:end]``, whitespace-trimmed, blank ones left out."""
    spans = []
    cursor = start
    while cursor < end:
        newline = text.find("\n", cursor, end)
        line_end = end if newline == -1 else newline
        a, b = _trim(text, cursor, line_end)
        if a < b:
            spans.append((a, b))
        cursor = line_end + 1
    return spans


def _prose_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence and line spans of ``text[start:end]`` (sentence_spans outside code)."""
    if start >= end:
        return []
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        boundary = match.start()
        is_newline = "\n" in match.group(0)
        if not is_newline and text[boundary - 1] == "." and _ends_with_abbreviation(text, boundary):
            continue
        if match.group(0) == "\n" and _is_wrapped_line(text, boundary, end):
            continue
        spans.append((cursor, boundary))
        cursor = match.end()
    spans.append((cursor, end))
    trimmed = [_trim(text, a, b) for a, b in spans]
    return [(a, b) for a, b in trimmed if a < b]


def _units(
    text: str, start: int, end: int, max_chars: int, code: Sequence[tuple[int, int]] = ()
) -> list[tuple[int, int]]:
    """Sentence/line spans in ``text[start:end]`` (whitespace trimmed), none over max_chars."""
    units: list[tuple[int, int]] = []
    for span_start, span_end in sentence_spans(text, start, end, code):
        units.extend(_split_long(text, span_start, span_end, max_chars))
    return units


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_long(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Split a span longer than max_chars at whitespace (or hard, when there is none)."""
    pieces: list[tuple[int, int]] = []
    while end - start > max_chars:
        cut = start + max_chars
        space = max(
            (m.start() for m in _WHITESPACE.finditer(text, start + max_chars // 2, cut)),
            default=-1,
        )
        if space > start:
            cut = space
        piece = _trim(text, start, cut)
        if piece[0] < piece[1]:
            pieces.append(piece)
        start, _ = _trim(text, cut, end)
    if start < end:
        pieces.append((start, end))
    return pieces


def split_spans(
    text: str,
    chunk_size: int,
    chunk_overlap: int,
    start: int = 0,
    end: int | None = None,
    code: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """Chunk spans of ``text[start:end]``: at most chunk_size chars (unless one unit is longer),
    consecutive chunks sharing whole trailing units of up to chunk_overlap chars (``code``: as
    for sentence_spans)."""
    end = len(text) if end is None else end
    units = _units(text, start, end, chunk_size, code)
    spans: list[tuple[int, int]] = []
    first = 0
    while first < len(units):
        last = first
        while last + 1 < len(units) and units[last + 1][1] - units[first][0] <= chunk_size:
            last += 1
        spans.append((units[first][0], units[last][1]))
        if last + 1 >= len(units):
            break
        chunk_end = units[last][1]
        next_first = last + 1
        while next_first - 1 > first and chunk_end - units[next_first - 1][0] <= chunk_overlap:
            next_first -= 1
        # The next chunk must reach past this one: when the overlap leaves no room for the next
        # unit, shrink it (else a chunk would hold nothing but text already in this one).
        while next_first <= last and units[last + 1][1] - units[next_first][0] > chunk_size:
            next_first += 1
        first = next_first
    return spans


def chunk_id(doc_key: str, index: int, start: int, text: str, sections: str = "") -> str:
    """Deterministic chunk id: same document key, position, text and sections (the headings'
    paths, when the chunk has any) give the same id. A chunk whose sections change gets a new
    id, so that the BM25 index, which follows ids, reads its new search text and metadata."""
    payload = f"{doc_key}\x00{index}\x00{start}\x00{text}"
    if sections:
        payload += f"\x00{sections}"
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def chunk_document(
    document: LoadedDocument,
    source: str,
    doc_key: str,
    chunk_size: int,
    chunk_overlap: int,
) -> list[Chunk]:
    """Chunks of one document. Pages of a PDF are chunked separately, so a chunk has one page."""
    regions = (
        [(page.start, page.end, page.number) for page in document.pages]
        if document.pages
        else [(0, len(document.text), None)]
    )
    chunks: list[Chunk] = []
    in_table: tuple[int, str] | None = None  # (start, table header) of the last chunk
    paths = section_paths(document.headings, document.title)
    starts = [at for at, _ in paths]
    code_blocks = sorted(document.code_blocks)
    for region_start, region_end, page in regions:
        for start, end in split_spans(
            document.text, chunk_size, chunk_overlap, region_start, region_end, code_blocks
        ):
            text = document.text[start:end]
            index = len(chunks)
            header = _header_above(document.text, start, in_table)
            in_table = (start, header) if header else None
            first, stop = bisect_left(starts, start), bisect_left(starts, end)
            section = paths[first - 1][1] if first else ""  # path_at(paths, start), by bisection
            sections = tuple((at - start, path) for at, path in paths[first:stop])
            code = clip(code_blocks, start, end)
            where = repr((section, sections)) if section or sections else ""
            if code:  # a chunk whose code blocks change is a new chunk too
                where += repr(code)
            chunks.append(
                Chunk(
                    id=chunk_id(doc_key, index, start, text, where),
                    text=text,
                    source=source,
                    title=document.title,
                    page=page,
                    start=start,
                    end=end,
                    index=index,
                    content_hash=hashlib.sha256(text.encode()).hexdigest()[:16],
                    table_header=header,
                    section=section,
                    sections=sections,
                    code=code,
                )
            )
    return chunks


# Table rows as the loaders write them: markdown ("| a | b |"), HTML and DOCX ("a | b | c").
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


_LONGEST_ROW = 20_000  # characters looked at for a chunk's first line


def _is_table_row(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("|") or " | " in stripped


def table_header(
    text: str, position: int, header_before: str | None = None, starts_document: bool = True
) -> str | None:
    """The header row of the table whose row holds ``text[position]`` (None for a line that is
    no table row, or for the header itself). Markdown marks its header with the ``|---|`` line
    under it; rows from HTML and DOCX tables carry no mark, so their table's first row counts
    as its header. ``text`` may be a chunk starting inside a table: ``header_before`` is that
    table's header (None when unknown; ``starts_document`` False says the text may start
    mid-table). A row read alone ("| 1000 / 150 |") says little; read after its header it
    says what each cell is."""
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end != -1 else len(text)]
    if not _is_table_row(line) or _TABLE_SEPARATOR.match(line):
        return None
    # The table's lines up to this row, walked upwards: the work is the table's length, not
    # the text's (chunking asks this at every chunk's start).
    block = [line]
    first = line_start
    while first > 0:
        above_start = text.rfind("\n", 0, first - 1) + 1
        above = text[above_start : first - 1]
        if not (_is_table_row(above) or _TABLE_SEPARATOR.match(above)):
            break
        block.append(above)
        first = above_start
    block.reverse()
    separators = [i for i, line in enumerate(block) if _TABLE_SEPARATOR.match(line)]
    starts_before = first == 0 and (not separators or separators[0] == 0)
    if starts_before and (header_before is not None or separators or not starts_document):
        return header_before  # the table starts before the text does
    header = separators[0] - 1 if separators else 0
    if header < 0 or header >= len(block) - 1:
        return None
    return block[header].strip()


def _header_above(text: str, start: int, previous: tuple[int, str] | None) -> str | None:
    """The header row of a table that ``text[start:]`` starts inside, when it lies before
    ``start`` (a chunk cut mid-table keeps it in its metadata). ``previous``: (start, header)
    of the chunk before, when it started inside a table: a chunk further down the same table
    has the same header, found without walking up the table again."""
    if start > 0 and text[start - 1] != "\n":
        return None  # not at a line's start, so not at a table row's
    # Bounded: in a text of one long line, an unbounded search per chunk would be quadratic.
    line_end = text.find("\n", start, start + _LONGEST_ROW)
    if not _is_table_row(text[start : line_end if line_end != -1 else start + _LONGEST_ROW]):
        return None
    if previous is not None and previous[0] < start:
        between = text[previous[0] : start].rstrip("\n").split("\n")
        if all(_is_table_row(line) or _TABLE_SEPARATOR.match(line) for line in between):
            return previous[1]
    return table_header(text, start)  # a header is never the row it is asked for: it is above
