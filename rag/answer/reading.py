"""Reading: the sentences of the retrieved chunks ranked for a question by the trained reader
(with their similarity to it and their chunk's place; ``Calibration.sentence_score``), and the
re-read of the best of them, each after the sentence before it, that decides whether the
documents answer. ``rag.answer.pipeline.RAG`` answers with it; calibration collects from it.
"""

from __future__ import annotations

from typing import Any

from rag.answer.models import Candidate
from rag.answer.selection import term_overlaps
from rag.answer.text import WORD
from rag.answer.verify import Verifier, list_end
from rag.chunking import table_header
from rag.codeblocks import inside, is_fence
from rag.reader import NO_ROOM, Reader, ReaderScore, with_context
from rag.retrieval import RetrievedChunk

# Sentences the reader scores per question (the best by embedding similarity to it), and the
# best-ranked of them read again after the sentence before them to decide answer/refuse. Both
# were chosen on the validation articles (the least reader work within one question of 24 and 4
# there; model card) and the calibration in reader.json was fitted with them.
MAX_READER_CANDIDATES = 12
CONTEXT_CANDIDATES = 2
# Past the 12, shorter candidates keep coming while their text totals at most this many
# characters (up to EXTRA_CANDIDATES_LIMIT): the 10th percentile of what the 12 nearest total on
# the SQuAD validation articles (median 1,842), so the reader never does more work than it does
# for most prose questions, while documents of short units (reStructuredText's doctest blocks,
# each read alone and with its lead-in) do not lose the answering one to the count.
READER_CHARS_BUDGET = 1451
EXTRA_CANDIDATES_LIMIT = 24
# A code block is read as one candidate of whole lines up to this long; a longer one in parts.
MAX_CODE_CHARS = 400


def within_budget(pool: list, texts: list[str]) -> list:
    """The first MAX_READER_CANDIDATES of ``pool`` (ordered nearest first; ``texts`` are their
    sentences), then more while all taken total at most READER_CHARS_BUDGET characters, up to
    EXTRA_CANDIDATES_LIMIT."""
    total = sum(len(text) for text in texts[:MAX_READER_CANDIDATES])
    taken = min(len(pool), MAX_READER_CANDIDATES)
    while taken < min(len(pool), EXTRA_CANDIDATES_LIMIT):
        total += len(texts[taken])
        if total > READER_CHARS_BUDGET:
            break
        taken += 1
    return pool[:taken]


def reading_title(chunk: RetrievedChunk, start: int, before: str = "") -> str:
    """What the reader reads before the sentence at ``start`` of ``chunk``: the document's
    title with the section the sentence is in (``RetrievedChunk.heading_at``), then for a table
    row its table's header row (``rag.chunking.table_header``), else ``before`` (the sentence
    before, when given)."""
    header = table_header(chunk.text, start, chunk.table_header, starts_document=chunk.start == 0)
    context = header or before
    title = chunk.heading_at(start)
    return with_context(title, context) if context else title


def _code_end(spans: list[tuple[int, int]], first: int, block: tuple[int, int], start: int) -> int:
    """The last span of the code block ``block`` from span ``first`` on that ends within
    MAX_CODE_CHARS of ``start`` (at least ``first``)."""
    last = first
    while (
        last + 1 < len(spans)
        and spans[last + 1][0] < block[1]
        and spans[last + 1][1] - start <= MAX_CODE_CHARS
    ):
        last += 1
    return last


class SentenceReader:
    """Ranks the retrieved chunks' sentences for a question and re-reads the best in context
    (thread-safe: the reader and the embedder are)."""

    def __init__(self, reader: Reader, embedder: Any, verifier: Verifier):
        self.reader = reader
        self.embedder = embedder
        self.verifier = verifier

    def context_score(
        self, question: str, ranked: list[Candidate], chunks: list[RetrievedChunk]
    ) -> float:
        """The best reader score of the CONTEXT_CANDIDATES best-ranked sentences among the
        nearest by similarity (``Candidate.decides``), each read after the sentence before it in
        its chunk (``in_context_scores``): what decides whether the documents answer."""
        deciding = [candidate for candidate in ranked if candidate.decides]
        scores = self.in_context_scores(question, deciding[:CONTEXT_CANDIDATES], chunks)
        return max(scores, default=float("-inf"))

    def in_context_scores(
        self, question: str, candidates: list[Candidate], chunks: list[RetrievedChunk]
    ) -> list[float]:
        """The reader's score for each candidate read after the sentence before it in its chunk
        (one opening its chunk is read alone). With the sentence before, the reader sees what
        "he" or "it" stands for and what the sentence continues. Where the two do not fit the
        reader's input together, the candidate's score read alone stands (on the validation
        articles, 68 of 13,920 such reads; cross-validated, every figure the same or 0.001-0.002
        better)."""
        if self.reader.reads_passages:
            # Each sentence was scored in a read of its whole chunk: already in context.
            return [candidate.reader_score for candidate in candidates]
        inputs = []
        for candidate in candidates:
            chunk = chunks[candidate.chunk_index]
            spans = self.verifier.chunk_sentences(chunk).spans
            before = [(a, b) for a, b in spans if b <= candidate.start]
            sentence_before = chunk.text[before[-1][0] : before[-1][1]] if before else ""
            title = reading_title(chunk, candidate.start, sentence_before)
            inputs.append((title, chunk.text[candidate.start : candidate.end]))
        scores = self.reader.score(question, inputs)
        return [
            candidate.reader_score if score.score == NO_ROOM else score.score
            for candidate, score in zip(candidates, scores, strict=True)
        ]

    def rank(self, question: str, chunks: list[RetrievedChunk]) -> list[Candidate]:
        """The retrieved chunks' sentences (a lead-in ending in ':' carries its list), scored by
        the reader, best first (by ``Calibration.sentence_score``: the reader's score with the
        sentence's similarity to the question and its chunk's place). Sentences repeated by
        overlapping chunks are scored once; the least worth reading (``select``) are left out
        past MAX_READER_CANDIDATES, or past READER_CHARS_BUDGET characters for short ones
        (``within_budget``; the reader costs 10–14 ms a sentence on two cores)."""
        if not chunks:
            return []
        if self.reader.reads_passages:
            return self.rank_in_passages(question, chunks)
        pool = self.select(question, self.pool(question, chunks), chunks)
        scores = self.reader.score(
            question,
            [
                (reading_title(chunks[index], a), chunks[index].text[a:b])
                for (_, index, a, b), _ in pool
            ],
        )
        ranked = [
            self._candidate(score, index, a, b, cosine, decides)
            for ((cosine, index, a, b), decides), score in zip(pool, scores, strict=True)
        ]
        ranked.sort(key=lambda candidate: candidate.score, reverse=True)
        return ranked

    def pool(
        self, question: str, chunks: list[RetrievedChunk]
    ) -> list[tuple[float, int, int, int]]:
        """Every unit the reader could read in ``chunks`` (``sentence_units``; one repeated by
        overlapping chunks once), as (cosine similarity to the question, chunk index, start,
        end), in chunk order."""
        query_vector = self.embedder.encode_query(question)
        pool: list[tuple[float, int, int, int]] = []
        seen: set[tuple[str, int, int]] = set()
        for index, chunk in enumerate(chunks):
            similarities = self.verifier.chunk_sentences(chunk).vectors @ query_vector
            for s, last, a, b in self.sentence_units(chunk):
                key = (chunk.source, chunk.start + a, chunk.start + b)
                if key in seen:
                    continue
                seen.add(key)
                pool.append((float(similarities[s : last + 1].max()), index, a, b))
        return pool

    def select(
        self, question: str, pool: list[tuple[float, int, int, int]], chunks: list[RetrievedChunk]
    ) -> list[tuple[tuple[float, int, int, int], bool]]:
        """The (cosine, chunk index, start, end) sentences of ``pool`` the reader reads, each
        with whether it decides: the nearest by similarity (``within_budget``), which the
        answer/refuse decision reads as its calibration was fitted, and with them the best by
        ``Calibration.selection_score`` (cosine, the question's terms held, chunk place,
        length; ``within_budget`` again), which may hold the answer more often but would
        raise a near miss's score if they decided too (model card)."""
        calibration = self.reader.calibration
        texts = [chunks[index].text[a:b] for _, index, a, b in pool]
        overlaps = (
            term_overlaps(question, texts)
            if calibration.select_overlap_weight
            else [0.0] * len(pool)
        )
        worth = [
            calibration.selection_score(cosine, overlap, index, len(text))
            for (cosine, index, _, _), overlap, text in zip(pool, overlaps, texts, strict=True)
        ]
        by_cosine = sorted(range(len(pool)), key=lambda i: pool[i][0], reverse=True)
        nearest = within_budget(by_cosine, [texts[i] for i in by_cosine])
        order = sorted(range(len(pool)), key=lambda i: worth[i], reverse=True)
        chosen = within_budget(order, [texts[i] for i in order])
        deciding = set(nearest)
        return [(pool[i], True) for i in nearest] + [
            (pool[i], False) for i in chosen if i not in deciding
        ]

    def _candidate(
        self,
        score: ReaderScore,
        index: int,
        a: int,
        b: int,
        cosine: float = 0.0,
        decides: bool = True,
    ) -> Candidate:
        """The sentence ``a:b`` of chunk ``index`` as the reader scored it, with its ranking
        score (``Calibration.sentence_score``)."""
        return Candidate(
            self.reader.calibration.sentence_score(score.score, cosine, index),
            index,
            a,
            b,
            a + score.start,
            a + score.end,
            reader_score=score.score,
            cosine=cosine,
            decides=decides,
        )

    def sentence_units(self, chunk: RetrievedChunk) -> list[tuple[int, int, int, int]]:
        """What the reader scores in a chunk: (first sentence, last sentence, start, end) of
        each sentence with a word in it, a lead-in ending in ':' together with its list or the
        code block after it, and the lines of each code block together (up to MAX_CODE_CHARS;
        rag.codeblocks). A section's heading line is not one: it is read as context of the
        sentences under it; nor is a code fence (```` ```bash ````)."""
        spans = self.verifier.chunk_sentences(chunk).spans
        text = chunk.text
        headings = {at for at, _ in chunk.sections}
        code = chunk.code
        units = []
        s = 0
        while s < len(spans):
            a, _ = spans[s]
            block = inside(code, a)
            if block is not None:
                last = _code_end(spans, s, block, a)
                lines = [i for i in range(s, last + 1) if not is_fence(text[slice(*spans[i])])]
                if lines and WORD.search(text[spans[lines[0]][0] : spans[lines[-1]][1]]):
                    units.append((lines[0], lines[-1], spans[lines[0]][0], spans[lines[-1]][1]))
                s = last + 1
                continue
            if a not in headings:
                last = list_end(text, spans, s)
                while last > s and inside(code, spans[last][0]) is not None:
                    last -= 1  # a lead-in's list ends where code starts
                following = inside(code, spans[s + 1][0]) if s + 1 < len(spans) else None
                if last == s and following and text[a : spans[s][1]].rstrip().endswith(":"):
                    end = _code_end(spans, s + 1, following, a)
                    while end > s and is_fence(text[slice(*spans[end])]):
                        end -= 1  # "Install it:" with the command under it
                    last = end
                b = spans[last][1]
                if WORD.search(text[a:b]):
                    units.append((s, last, a, b))
            s += 1
        return units

    def rank_in_passages(self, question: str, chunks: list[RetrievedChunk]) -> list[Candidate]:
        """rank_sentences for a passage reader: each chunk is read once, whole, and every
        sentence of it scored from that read; a sentence repeated by overlapping chunks keeps
        its best score."""
        units = [[(a, b) for _, _, a, b in self.sentence_units(chunk)] for chunk in chunks]
        scores = self.reader.score_passages(
            question,
            [
                (chunk.heading_at(0), chunk.text, own)
                for chunk, own in zip(chunks, units, strict=True)
            ],
        )
        best: dict[tuple[str, int, int], Candidate] = {}
        for index, (chunk, own, scored) in enumerate(zip(chunks, units, scores, strict=True)):
            for (a, b), score in zip(own, scored, strict=True):
                key = (chunk.source, chunk.start + a, chunk.start + b)
                candidate = self._candidate(score, index, a, b)  # calibrated without a cosine
                if key not in best or candidate.score > best[key].score:
                    best[key] = candidate
        return sorted(best.values(), key=lambda candidate: candidate.score, reverse=True)
