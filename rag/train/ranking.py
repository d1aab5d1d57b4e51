"""The sentence ranker's fit: how the reader's score, the sentence's cosine similarity to the
question and its chunk's retrieval rank combine into the score that ranks candidate sentences
(``rag.reader.Calibration.sentence_score``), fitted on validation records
(``rag.train.calibrate``).

A record row is one question: ``id``, ``expected``, ``dense`` (the best chunk's cosine) and
``cands``, the candidate sentences answering would read, each with the reader's ``score`` read
alone, ``ctx`` read after the sentence before it, ``cos``, ``rank`` (its chunk's place),
``text`` and ``direct`` (the reader's short answer in it)."""

from __future__ import annotations

import numpy as np

from rag.answer.reading import CONTEXT_CANDIDATES
from rag.reader import Calibration

TOP = 3  # candidates kept per question once ranked


def holds_answer(row: dict, texts: list[str]) -> bool:
    """Whether the texts hold one of the question's expected answers."""
    from rag.evaluation import missing_groups

    return bool(row["expected"]) and not missing_groups(" ".join(texts), row["expected"])


def fit_ranker(rows: list[dict]) -> Calibration:
    """A logistic regression of "this candidate holds the answer" over the candidates of the
    answerable questions ``rows``, on standardised features (so the L2 penalty treats the
    reader's score, spanning tens of units, and the cosine, under one, alike): a calibration
    holding the ranker's weights (its other fields at their defaults)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    cands = [(row, c) for row in rows for c in row["cands"]]
    features = np.array([[c["score"], c["cos"], c["rank"]] for _, c in cands], dtype=float)
    labels = np.array([holds_answer(row, [c["text"]]) for row, c in cands], dtype=int)
    if len(set(labels)) < 2:
        return Calibration()
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=1.0).fit(scaler.transform(features), labels)
    weights = model.coef_[0] / scaler.scale_
    bias = float(model.intercept_[0] - weights @ scaler.mean_)
    reader, cosine, chunk = (float(w) for w in weights)
    return Calibration(
        rank_reader_weight=reader,
        rank_cosine_weight=cosine,
        rank_chunk_weight=chunk,
        rank_bias=bias,
    )


def ranked(row: dict, calibration: Calibration) -> dict:
    """The question as answering sees it with this calibration's ranker
    (``Calibration.sentence_score``, the formula answering uses): the TOP candidates' ``scores`` and
    ``texts`` best first, the best in-context reader score of the CONTEXT_CANDIDATES best
    of those that decide (``context``; ``Candidate.decides``), and the best one's short answer
    (``direct``)."""

    def score(candidate: dict) -> float:
        return calibration.sentence_score(candidate["score"], candidate["cos"], candidate["rank"])

    order = sorted(row["cands"], key=score, reverse=True)
    deciding = [c for c in order if c.get("decides", True)]  # Candidate.decides
    return {
        "id": row["id"],
        "expected": row["expected"],
        "dense": row["dense"],
        "scores": [score(c) for c in order[:TOP]],
        "texts": [c["text"] for c in order[:TOP]],
        "context": max((c["ctx"] for c in deciding[:CONTEXT_CANDIDATES]), default=-1e4),
        "direct": order[0]["direct"] if order else "",
    }
