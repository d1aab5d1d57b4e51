"""Chunking: exact offsets on varied texts, sizes, overlap, pages and deterministic ids."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from rag.chunking import Chunk, chunk_document, chunk_id, split_spans, table_header
from rag.loaders import LoadedDocument, PageSpan, load_file

WORDS = " ".join(
    [
        "the of and military supply China Russia drones 90% components 2023 rose sharply",
        "according to customs data Über straße naïve café 東京 北京 Москва ελληνικά",
        "e.g. U.S. Dr. 3.14 1,000 - — ... ! ? ; : ( ) [ ] \" ' ” ’ …",
    ]
).split(" ")
SEPARATORS = [" ", " ", " ", "  ", "\n", "\n\n", "\t", ". ", "! ", "? ", ".\n", "\u00a0", "\r\n"]


def random_text(rng: random.Random) -> str:
    """Texts that stress boundaries: long unbroken tokens, runs of whitespace and punctuation,
    non-Latin scripts, leading/trailing whitespace, empty lines."""
    kind = rng.random()
    if kind < 0.05:
        return rng.choice(["", " ", "\n\n", "x", ".", "a b", "\t\n \n"])
    parts: list[str] = []
    for _ in range(rng.randrange(1, 400)):
        roll = rng.random()
        if roll < 0.02:
            parts.append("X" * rng.randrange(50, 3000))  # no whitespace to cut at
        elif roll < 0.04:
            parts.append(" " * rng.randrange(1, 300))
        elif roll < 0.06:
            parts.append("\n" * rng.randrange(1, 10))
        else:
            parts.append(rng.choice(WORDS))
        parts.append(rng.choice(SEPARATORS))
    text = "".join(parts)
    if rng.random() < 0.3:
        text = "   \n" + text + "\n\n  "
    return text


def check_spans(text: str, spans: list[tuple[int, int]], size: int, start: int, end: int) -> None:
    previous_start = previous_end = -1
    for a, b in spans:
        assert start <= a < b <= end
        piece = text[a:b]
        assert piece == piece.strip(), (a, b)
        assert a > previous_start and b > previous_end  # strictly advancing
        previous_start, previous_end = a, b
    # every non-space character is covered by some chunk
    covered = bytearray(len(text))
    for a, b in spans:
        covered[a:b] = b"\x01" * (b - a)
    for i in range(start, end):
        if not text[i].isspace():
            assert covered[i], (i, text[max(0, i - 20) : i + 20])
    # size respected (a unit is only longer than size when it had to be cut hard)
    for a, b in spans:
        assert b - a <= size, (a, b, size)


@pytest.mark.parametrize("seed", range(60))
def test_offsets_exact_on_varied_texts(seed: int) -> None:
    rng = random.Random(seed)
    text = random_text(rng)
    size = rng.choice([100, 120, 200, 350, 1000])
    overlap = rng.choice([0, 10, 50, size // 2, size - 1])
    spans = split_spans(text, size, overlap)
    check_spans(text, spans, size, 0, len(text))
    document = LoadedDocument(path=Path("x.txt"), text=text, title="T")
    chunks = chunk_document(document, "x.txt", "/abs/x.txt", size, overlap)
    assert [(c.start, c.end) for c in chunks] == spans
    for index, chunk in enumerate(chunks):
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.index == index
        assert chunk.page is None


@pytest.mark.parametrize("seed", range(10))
def test_offsets_within_a_region(seed: int) -> None:
    rng = random.Random(1000 + seed)
    text = random_text(rng) + random_text(rng)
    start = rng.randrange(0, max(1, len(text)))
    end = rng.randrange(start, len(text) + 1)
    spans = split_spans(text, 150, 40, start, end)
    check_spans(text, spans, 150, start, end)


def test_overlap_shares_whole_sentences() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(40)]
    text = " ".join(sentences)
    spans = split_spans(text, 200, 60)
    assert len(spans) > 3
    for (_, b1), (a2, _) in itertools.pairwise(spans):
        assert a2 < b1, "consecutive chunks overlap"
        assert b1 - a2 <= 60
        assert text[a2:b1] in sentences or " " in text[a2:b1]
        assert text[a2 - 2 : a2] == ". " or a2 == 0  # starts at a sentence start
    no_overlap = split_spans(text, 200, 0)
    for (_, b1), (a2, _) in itertools.pairwise(no_overlap):
        assert a2 > b1


def test_chunks_are_cut_at_sentence_boundaries() -> None:
    text = "First sentence is short. " * 10 + "Second kind of sentence! " * 10
    for a, b in split_spans(text, 120, 30):
        assert text[b - 1] in ".!", text[a:b]


def test_long_word_is_cut_hard() -> None:
    text = "word " * 10 + "Z" * 450 + " tail"
    spans = split_spans(text, 100, 20)
    check_spans(text, spans, 100, 0, len(text))
    assert any(text[a:b] == "Z" * 100 for a, b in spans)  # cut inside the word, nothing lost


def test_empty_and_blank_text_give_no_chunks() -> None:
    assert split_spans("", 100, 10) == []
    assert split_spans(" \n\t ", 100, 10) == []


def _pdf_like() -> LoadedDocument:
    page1 = "Page one sentence. " * 12
    page3 = "Page three sentence. " * 12
    text = page1.strip() + "\n\n" + page3.strip()
    p1_end = len(page1.strip())
    return LoadedDocument(
        path=Path("doc.pdf"),
        text=text,
        title="Doc",
        pages=[PageSpan(1, 0, p1_end), PageSpan(3, p1_end + 2, len(text))],
    )


def test_pdf_pages_chunked_separately() -> None:
    document = _pdf_like()
    chunks = chunk_document(document, "doc.pdf", "/abs/doc.pdf", 100, 20)
    assert {c.page for c in chunks} == {1, 3}
    for chunk in chunks:
        page = next(p for p in document.pages if p.number == chunk.page)
        assert page.start <= chunk.start < chunk.end <= page.end  # never spans two pages
        assert chunk.text == document.text[chunk.start : chunk.end]
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_real_pdf_chunks_have_real_page_numbers(tmp_path: Path, make_pdf) -> None:
    pages = [f"Fact {n}: the value on page {n} is {n * 11}. " * 8 for n in (1, 2, 3)]
    document = load_file(make_pdf(tmp_path / "r.pdf", [pages[0], "", pages[1], pages[2]]))
    chunks = chunk_document(document, "r.pdf", "/abs/r.pdf", 200, 30)
    by_page: dict[int, list[Chunk]] = {}
    for chunk in chunks:
        assert chunk.text == document.text[chunk.start : chunk.end]
        by_page.setdefault(chunk.page, []).append(chunk)
    assert sorted(by_page) == [1, 3, 4]
    assert all("page 2 is 22" in c.text for c in by_page[3])
    assert all("page 3 is 33" in c.text for c in by_page[4])


def test_ids_deterministic_and_distinct() -> None:
    text = "Alpha beta gamma. " * 200
    document = LoadedDocument(path=Path("a.txt"), text=text, title="A")
    first = chunk_document(document, "a.txt", "/k/a.txt", 200, 40)
    second = chunk_document(document, "a.txt", "/k/a.txt", 200, 40)
    assert [c.id for c in first] == [c.id for c in second]
    assert len({c.id for c in first}) == len(first)  # repeated text, still unique ids
    other_key = chunk_document(document, "a.txt", "/k/b.txt", 200, 40)
    assert not {c.id for c in first} & {c.id for c in other_key}
    assert chunk_id("k", 0, 0, "x") == chunk_id("k", 0, 0, "x") != chunk_id("k", 0, 0, "y")
    assert first[0].content_hash == second[0].content_hash
    assert all(len(c.id) == 32 for c in first)


def test_search_text_prefixes_title_once() -> None:
    chunk = Chunk("i", "Body text.", "s", "Title", None, 0, 10, 0, "h")
    assert chunk.search_text == "Title\nBody text."
    titled = Chunk("i", "Title and body.", "s", "Title", None, 0, 15, 0, "h")
    assert titled.search_text == "Title and body."
    assert Chunk("i", "Body.", "s", "", None, 0, 5, 0, "h").search_text == "Body."


TABLE_DOC = (
    "Opening hours of the library.\n\n"
    "| day | opens | closes |\n| --- | --- | --- |\n"
    "| Monday | 09:00 | 17:00 |\n| Saturday | 10:00 | 14:00 |\n\n"
    "The reading room stays open in the holidays."
)


def test_table_rows_know_their_header() -> None:
    """A Markdown row's header is the row above the |---| line; HTML/DOCX rows ("a | b")
    have no mark, so their table's first row is the header."""
    header = "| day | opens | closes |"
    for row in ("| Monday", "| Saturday"):
        assert table_header(TABLE_DOC, TABLE_DOC.index(row) + 3) == header
    for not_a_row in ("Opening", "| day", "| ---", "The reading"):
        assert table_header(TABLE_DOC, TABLE_DOC.index(not_a_row)) is None
    plain = "Prices\nItem | Price\nApple | 1.20\nPear | 0.90"
    assert table_header(plain, plain.index("Pear")) == "Item | Price"


def test_a_text_starting_mid_table_uses_the_header_it_was_given() -> None:
    rows = TABLE_DOC[TABLE_DOC.index("| Monday") :]
    saturday = rows.index("| Saturday")
    assert table_header(rows, saturday, starts_document=False) is None  # unknown: not "Monday"
    assert table_header(rows, saturday, "| day | opens | closes |", False) == (
        "| day | opens | closes |"
    )


def test_a_chunk_cut_mid_table_keeps_the_header_in_its_metadata() -> None:
    document = LoadedDocument(path=Path("hours.md"), text=TABLE_DOC, title="Hours")
    chunks = chunk_document(document, "hours.md", "k", chunk_size=60, chunk_overlap=0)
    mid_table = [c for c in chunks if c.text.startswith("| Monday") or c.text.startswith("| Sat")]
    assert mid_table and all(c.table_header == "| day | opens | closes |" for c in mid_table)
    assert chunks[0].table_header is None


def test_headers_of_a_long_table_match_a_walk_up_from_each_chunk() -> None:
    """Chunking carries a table's header from chunk to chunk down a long table (walking up the
    whole table at every chunk was quadratic); the result is the same as walking up."""
    rows = "\n".join(f"| item {i} | {i * 3} | note {i} |" for i in range(400))
    text = ("Prices below.\n\n| item | price | note |\n| --- | --- | --- |\n" + rows + "\n\n") * 2
    document = LoadedDocument(path=Path("prices.md"), text=text, title="Prices")
    chunks = chunk_document(document, "prices.md", "k", chunk_size=300, chunk_overlap=60)
    inside = [c for c in chunks if c.text.startswith("| item ") and "| --- |" not in c.text]
    assert len(inside) > 20
    for chunk in chunks:
        expected = table_header(text, chunk.start) if chunk.text.startswith("| item ") else None
        if expected is not None and text.rfind(expected, 0, chunk.start) == -1:
            expected = None
        assert chunk.table_header == expected
    assert all(c.table_header == "| item | price | note |" for c in inside)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A short line ending in "the", "to", "and" or a comma goes on in the next line, even
        # when that line starts with inline code, a link or a capital.
        (
            "Modules can be pickled by value using the\n`register_pickle_by_value(module)` API:",
            ["Modules can be pickled by value using the\n`register_pickle_by_value(module)` API:"],
        ),
        (
            "Another popular use of `mmh3` is to\n[calculate favicon hashes](https://x.org).",
            ["Another popular use of `mmh3` is to\n[calculate favicon hashes](https://x.org)."],
        ),
        (
            "It writes to stdout,\nJSON files and sockets.",
            ["It writes to stdout,\nJSON files and sockets."],
        ),
        # Headings, labels and finished lines still end where they end.
        ("Installation\n`pip install mmh3`", ["Installation", "`pip install mmh3`"]),
        ("Options:\n`--fast` skips the checks.", ["Options:", "`--fast` skips the checks."]),
        ("Read the guide\nThen run the tests.", ["Read the guide", "Then run the tests."]),
    ],
)
def test_a_line_ending_mid_sentence_goes_on(text: str, expected: list[str]) -> None:
    from rag.chunking import sentence_spans

    assert [text[a:b] for a, b in sentence_spans(text)] == expected
