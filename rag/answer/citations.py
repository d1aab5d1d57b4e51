"""Composing the answer text: the direct answer, [n] markers and the citations they point to."""

from __future__ import annotations

import textwrap

from rag import markers
from rag.answer.models import Candidate, Citation, RetrievedInfo
from rag.answer.text import WORD
from rag.answer.verify import Support
from rag.chunking import sentence_spans
from rag.codeblocks import inside, is_fence
from rag.retrieval import RetrievedChunk

DIRECT_MAX_SHARE = 0.6  # a short answer is led with only when it is this much shorter
DIRECT_MAX_WORDS = 10  # ... and a phrase, not a clause (SQuAD's answers are mostly 1-5 words)
_EDGE_PUNCTUATION = " \t\n,;:.()[]\"'“”‘’"


def direct_answer(best: Candidate, chunks: list[RetrievedChunk]) -> str:
    """The reader's short answer in the best sentence ("1990", "about 90%"), or "" when it is
    most of the sentence anyway, spans cells of a table row ("10:00 | 14:00": which cell
    answers is not known), or the best candidate is a lead-in with its list."""
    text = chunks[best.chunk_index].text
    block = text[best.start : best.end]
    if len(sentence_spans(block)) > 1 or inside(chunks[best.chunk_index].code, best.start):
        return ""  # several sentences, or code: the quote is the answer
    start, end = _whole_code_spans(text, best.answer_start, best.answer_end, best.start, best.end)
    span = _without_stray_emphasis(" ".join(text[start:end].split()).strip(_EDGE_PUNCTUATION))
    sentence = " ".join(block.split())
    too_long = len(span) > DIRECT_MAX_SHARE * len(sentence) or len(span.split()) > DIRECT_MAX_WORDS
    if not WORD.search(span) or too_long or "|" in span:
        return ""
    return span


def _whole_code_spans(text: str, start: int, end: int, lo: int, hi: int) -> tuple[int, int]:
    """``text[start:end]`` widened to take in whole any `inline code` of ``text[lo:hi]`` (the
    sentence) it starts or ends inside: "a `str" becomes "a `str`"."""
    ticks = [i for i in range(lo, hi) if text[i] == "`"]
    for open_at, close_at in zip(ticks[::2], ticks[1::2], strict=False):
        if open_at < end and close_at >= start:  # the code span overlaps the answer
            start, end = min(start, open_at), max(end, close_at + 1)
    return start, end


def _without_stray_emphasis(span: str) -> str:
    """``span`` without markdown emphasis or link openers left unpaired at its edges, as a
    cut through "__[CommonMark spec](...)__" leaves them ("__[CommonMark spec")."""
    for marker in ("**", "__"):
        if span.count(marker) % 2:
            span = span.strip(marker[0] + _EDGE_PUNCTUATION)
    if span.count("[") != span.count("]"):
        span = span.strip("[]" + _EDGE_PUNCTUATION)
    return span


class Composer:
    """Builds the answer sentence by sentence: one [n] per sentence, numbered in order of first
    use, and the citations those numbers point to. A direct answer found in the first sentence
    leads it: "1990 — The first … 1990 … [1]". Each added piece extends the text, so what was
    shown while answering is always a prefix of the final answer."""

    def __init__(self, chunks: list[RetrievedChunk], direct: str = ""):
        self.chunks = chunks
        self.direct = direct
        self.text = ""
        self.citations: list[Citation] = []
        self.leads_with_direct = False
        self._numbers: dict[tuple[int, int, int], int] = {}

    def add(self, text: str, support: Support) -> str:
        """Append a supported sentence; returns what was appended (with its leading space)."""
        key = (support.chunk_index, support.start, support.end)
        if key not in self._numbers:
            chunk = self.chunks[support.chunk_index]
            self._numbers[key] = len(self._numbers) + 1
            local_start = support.start - chunk.start
            local_end = support.end - chunk.start
            self.citations.append(
                Citation(
                    n=self._numbers[key],
                    source=chunk.source,
                    chunk_id=chunk.chunk_id,
                    page=chunk.page,
                    start=support.start,
                    end=support.end,
                    quote=chunk.text[local_start:local_end],
                    section=chunk.section_at(local_start),
                    chunk_start=chunk.start,
                    chunk_index=int(chunk.metadata.get("chunk_index", 0)),
                    chunk_text=chunk.text,
                    title=chunk.title,
                )
            )
        marker = markers.cite(self._numbers[key])
        chunk = self.chunks[support.chunk_index]
        local_start, local_end = support.start - chunk.start, support.end - chunk.start
        code_start = next(
            (max(a, local_start) for a, b in chunk.code if a < local_end and b > local_start),
            local_end,
        )
        pieces = []
        if code_start > local_start:  # prose, or a lead-in before its code ("Install it:")
            prose = text if code_start == local_end else chunk.text[local_start:code_start]
            pieces.append(self._prose_piece(prose, marker))
        if code_start < local_end:
            pieces.append(code_piece(chunk.text, code_start, local_end, marker))
        piece = ""
        for part in pieces:
            fenced = part.startswith(("```", "~~~"))
            piece += ("\n" if fenced else " ") + part if self.text or piece else part
        self.text += piece
        return piece

    def _prose_piece(self, text: str, marker: str) -> str:
        """Quoted prose with its marker after each sentence; the first leads with the direct
        answer when there is one."""
        # Line breaks of the source (wrapped PDF lines, list items) read as spaces in an answer;
        # the citation keeps the exact quote.
        sentence = " ".join(text.split())
        if sentence and sentence[-1] not in ".!?…\"'”’;:|":  # "|": a table row
            sentence += "."
        direct = self.direct
        if not self.text and direct and direct in sentence and not sentence.startswith(direct):
            sentence = f"{direct} — {sentence}"
            self.leads_with_direct = True
        # A quote of several sentences (a lead-in and its list) cites after each of them.
        spans = sentence_spans(sentence) or [(0, len(sentence))]
        return " ".join(f"{sentence[a:b]} {marker}" for a, b in spans)


def code_piece(text: str, start: int, end: int, marker: str) -> str:
    """Code quoted in an answer as markdown, then its marker: one line as inline code, several
    (their indentation kept, less what they share) as a fenced block."""
    line_start = text.rfind("\n", 0, start) + 1
    lines = [line for line in text[line_start:end].split("\n") if not is_fence(line)]
    code = textwrap.dedent("\n".join(lines)).strip("\n")
    if "\n" not in code and "`" not in code:
        return f"`{code.strip()}` {marker}"
    fence = "~~~" if "```" in code else "```"
    return f"{fence}\n{code}\n{fence}\n{marker}"


def compose_answer(
    kept: list[tuple[str, Support]], chunks: list[RetrievedChunk], direct: str = ""
) -> tuple[str, list[Citation]]:
    """Answer text with one [n] per sentence, and the citations those numbers point to."""
    composer = Composer(chunks, direct)
    for text, support in kept:
        composer.add(text, support)
    return composer.text, composer.citations


def retrieved_info(chunks: list[RetrievedChunk]) -> list[RetrievedInfo]:
    return [
        RetrievedInfo(
            chunk_id=chunk.chunk_id,
            source=chunk.source,
            score=round(float(chunk.score), 6),
            text=chunk.text,
            page=chunk.page,
            title=chunk.title,
            dense_score=chunk.dense_score,
        )
        for chunk in chunks
    ]
