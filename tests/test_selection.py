"""Which retrieved sentences the reader reads (rag/answer/selection.py, rag/train/selection.py,
``SentenceReader.select``) and which of them decide answer/refuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag.answer import RAG
from rag.answer.reading import EXTRA_CANDIDATES_LIMIT, within_budget
from rag.answer.selection import term_overlaps, term_set
from rag.config import Settings
from rag.ingest import ingest
from rag.reader import READER_DIR, Calibration
from rag.retrieval import RetrievedChunk
from rag.train.ranking import ranked
from rag.train.selection import cross_validated_recall, fit, recall
from tests.conftest import write_doctest_readme


def test_identifiers_hold_their_parts() -> None:
    assert {"next", "minor", "next_minor"} <= term_set(">>> new_v = v.next_minor()")
    assert {"pure", "random", "polici"} <= term_set("ULIDGenerator(policy=PureRandomPolicy())")
    assert "the" not in term_set("the minor version")  # stopwords stay out


def test_overlap_weighs_rare_terms_more() -> None:
    texts = ["bump the minor number with next_minor", "the version number", "a version"]
    overlaps = term_overlaps("How do I bump the minor version number?", texts)
    assert overlaps[0] > overlaps[1] > overlaps[2] >= 0.0
    assert overlaps[0] <= 1.0
    assert term_overlaps("the and of", texts) == [0.0, 0.0, 0.0]  # no terms: no signal


def _rows(seed: int, lexical: bool) -> list[dict]:
    """Questions with 30 units each; when ``lexical`` the answering one is far by cosine but
    shares the question's terms, else nothing tells it apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(200):
        answer = int(rng.integers(30))
        units = [
            {
                "cos": float(rng.normal(0.5, 0.05)) - (0.1 if i == answer and lexical else 0.0),
                "ovl": float(0.9 if (i == answer and lexical) else rng.uniform(0.0, 0.4)),
                "rank": i // 8,
                "len": 150,
                "y": i == answer,
            }
            for i in range(30)
        ]
        rows.append({"expected": [["x"]], "units": units})
    return rows


def test_fitted_selection_finds_what_the_cosine_misses() -> None:
    rows = _rows(seed=2, lexical=True)
    weights = fit(rows)
    assert weights["select_overlap_weight"] > 0 > weights["select_cosine_weight"]
    found, asked = recall(rows, weights)
    by_cosine, _ = recall(rows, None)
    assert asked == 200 and found > 0.95 * asked and by_cosine < 0.5 * asked
    assert cross_validated_recall(rows) > 0.95
    assert cross_validated_recall(_rows(seed=2, lexical=False)) < 0.6


def test_only_the_nearest_decide_answer_or_refuse() -> None:
    """``ranked`` (what calibration reads) takes the in-context score from the best-ranked of
    the candidates flagged ``decides`` (Candidate.decides), while answering from all."""
    cands = [
        {"score": s, "ctx": ctx, "cos": 0.5, "rank": 0, "text": text, "direct": "", "decides": d}
        for s, ctx, text, d in (
            (9.0, 8.0, "A", False),
            (2.0, 1.0, "B", True),
            (1.0, 3.0, "C", True),
            (0.0, 7.0, "D", True),
        )
    ]
    row = {"id": "q", "expected": [], "dense": 0.5, "cands": cands}
    seen = ranked(row, Calibration())
    assert seen["texts"][0] == "A" and seen["context"] == 3.0  # B and C decide, not A or D
    legacy = {**row, "cands": [{k: v for k, v in c.items() if k != "decides"} for c in cands]}
    assert ranked(legacy, Calibration())["context"] == 8.0  # records without the flag


def test_shipped_calibration_selects_and_defaults_keep_the_cosine_order() -> None:
    calibration = json.loads((READER_DIR / "reader.json").read_text())["calibration"]
    assert calibration["select_overlap_weight"] > 0 and calibration["select_cosine_weight"] > 0
    plain = Calibration()
    assert plain.selection_score(0.7, 1.0, 3, 500) == pytest.approx(0.7)


def test_units_chosen_by_their_words_are_read_but_do_not_decide(
    tmp_path, settings: Settings
) -> None:
    """A README of many doctest blocks: the block that holds the question's words is read
    although others are nearer by embedding; what the answer/refuse decision reads is still
    the nearest by similarity, and the reader reads at most twice the budget's count."""
    census = "To count the terns of a colony, ask the census:\n\n>>> tern.census_colony()\n"
    assert ingest([write_doctest_readme(tmp_path, census)], settings).ok
    bot = RAG(settings)
    question = "Which tern call gives the census of a colony?"
    chunks: list[RetrievedChunk] = bot.searcher.search(question).chunks
    ranked_here = bot.rank_sentences(question, chunks)
    texts = {chunks[c.chunk_index].text[c.start : c.end]: c for c in ranked_here}
    assert any("census_colony" in chunk.text for chunk in chunks)
    assert any("census_colony" in text for text in texts)
    pool = bot.sentences.pool(question, chunks)
    by_cosine = sorted(pool, key=lambda unit: unit[0], reverse=True)
    nearest = within_budget(by_cosine, [chunks[i].text[a:b] for _, i, a, b in by_cosine])
    deciding = {(c.chunk_index, c.start, c.end) for c in ranked_here if c.decides}
    assert deciding == {(i, a, b) for _, i, a, b in nearest}
    assert len(ranked_here) <= 2 * EXTRA_CANDIDATES_LIMIT
