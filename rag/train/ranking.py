"""The sentence ranker's fit: how the reader's score, the sentence's cosine similarity to the
question and its chunk's retrieval rank combine into the score that ranks candidate sentences
(``rag.reader.Calibration.sentence_score``), fitted on validation records
(``rag.train.calibrate``).

A record row is one question: ``id``, ``expected``, ``dense`` (the best chunk's cosine) and
``cands``, the candidate sentences answering would read, each with the reader's ``score`` read
alone, ``ctx`` read after the sentence before it, ``cos``, ``rank`` (its chunk's place),
``text`` and ``direct`` (the reader's short answer in it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.answer.pipeline import CONTEXT_CANDIDATES

TOP = 3  # candidates kept per question once ranked


@dataclass(frozen=True)
class Ranker:
    """Weights of a candidate's reader score, cosine and chunk rank, and a bias."""

    reader: float = 1.0
    cosine: float = 0.0
    chunk: float = 0.0
    bias: float = 0.0

    def score(self, candidate: dict) -> float:
        return (
            self.reader * candidate["score"]
            + self.cosine * candidate["cos"]
            + self.chunk * candidate["rank"]
            + self.bias
        )


def holds_answer(row: dict, texts: list[str]) -> bool:
    """Whether the texts hold one of the question's expected answers."""
    from rag.evaluation import missing_groups

    return bool(row["expected"]) and not missing_groups(" ".join(texts), row["expected"])


def fit_ranker(rows: list[dict]) -> Ranker:
    """A logistic regression of "this candidate holds the answer" over the candidates of the
    answerable questions ``rows``, on standardised features (so the L2 penalty treats the
    reader's score, spanning tens of units, and the cosine, under one, alike)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    cands = [(row, c) for row in rows for c in row["cands"]]
    features = np.array([[c["score"], c["cos"], c["rank"]] for _, c in cands], dtype=float)
    labels = np.array([holds_answer(row, [c["text"]]) for row, c in cands], dtype=int)
    if len(set(labels)) < 2:
        return Ranker()
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=1.0).fit(scaler.transform(features), labels)
    weights = model.coef_[0] / scaler.scale_
    bias = float(model.intercept_[0] - weights @ scaler.mean_)
    return Ranker(*(float(w) for w in weights), bias=bias)


def ranked(row: dict, ranker: Ranker) -> dict:
    """The question as answering sees it with this ranker: the TOP candidates' ``scores`` and
    ``texts`` best first, the best in-context reader score of the CONTEXT_CANDIDATES best
    (``context``), and the best one's short answer (``direct``)."""
    order = sorted(row["cands"], key=ranker.score, reverse=True)
    return {
        "id": row["id"],
        "expected": row["expected"],
        "dense": row["dense"],
        "scores": [ranker.score(c) for c in order[:TOP]],
        "texts": [c["text"] for c in order[:TOP]],
        "context": max((c["ctx"] for c in order[:CONTEXT_CANDIDATES]), default=-1e4),
        "direct": order[0]["direct"] if order else "",
    }
