"""The answerability fit of the reader's calibration (rag/train/calibrate.py)."""

from __future__ import annotations

import numpy as np

from rag.train.calibrate import fit_answerability


def _sample(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A reader-like score (tens of units) and a cosine-like one (under one unit)."""
    rng = np.random.default_rng(seed)
    labels = np.array([1] * 300 + [0] * 200)
    reader = np.where(labels == 1, rng.normal(2.0, 4.0, 500), rng.normal(-4.0, 4.0, 500))
    cosine = np.where(labels == 1, rng.normal(0.6, 0.08, 500), rng.normal(0.45, 0.08, 500))
    return np.column_stack([reader, cosine]), labels


def test_decisions_do_not_depend_on_a_features_unit() -> None:
    features, labels = _sample()
    weights, bias = fit_answerability(features, labels)
    rescaled = features * np.array([1.0, 1000.0])
    weights_rescaled, bias_rescaled = fit_answerability(rescaled, labels)
    np.testing.assert_allclose(
        features @ weights + bias, rescaled @ weights_rescaled + bias_rescaled, rtol=1e-6
    )
    np.testing.assert_allclose(weights_rescaled[1] * 1000.0, weights[1], rtol=1e-6)


def test_weights_are_on_the_raw_features() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, labels = _sample(seed=5)
    weights, bias = fit_answerability(features, labels)
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=1.0, class_weight="balanced").fit(
        scaler.transform(features), labels
    )
    np.testing.assert_allclose(
        features @ weights + bias, model.decision_function(scaler.transform(features)), rtol=1e-6
    )
    assert weights[0] > 0 and weights[1] > 0


def test_a_constant_feature_is_tolerated() -> None:
    features, labels = _sample()
    features[:, 1] = 0.5
    weights, bias = fit_answerability(features, labels)
    assert np.isfinite(weights).all() and np.isfinite(bias)


def _records(seed: int, separation: float, cosine_signal: float = 0.0) -> dict[str, list[dict]]:
    """Calibration records (as ``--records`` writes them): six candidates per question, one of
    an answerable question's holding its answer. The in-context score of that candidate (of
    the best one elsewhere) separates answerable questions from the others by ``separation``
    standard deviations; its cosine is ``cosine_signal`` above the others'; reader scores
    alone do not tell which candidate answers."""
    rng = np.random.default_rng(seed)
    sizes = {"answerable": 300, "adversarial": 60, "outside": 140}
    records = {}
    for name, size in sizes.items():
        rows = []
        for i in range(size):
            answer = int(rng.integers(6)) if name == "answerable" else -1
            cands = []
            for c in range(6):
                holds = c == answer
                cands.append(
                    {
                        "score": float(rng.normal(0.0, 3.0)),
                        "ctx": float(rng.normal(separation if holds else 0.0, 1.0)),
                        "cos": float(rng.normal(0.4 + (cosine_signal if holds else 0.0), 0.05)),
                        "rank": c // 2,
                        "text": f"Sentence {c} says {'Answerum' if holds else 'nothing'}.",
                        "direct": "Answerum" if holds else "",
                    }
                )
            expected = [["Answerum"]] if name == "answerable" else []
            rows.append({"id": f"{name}{i}", "expected": expected, "dense": 0.5, "cands": cands})
        records[name] = rows
    return records


def test_ranker_learns_which_feature_finds_the_answer() -> None:
    from rag.reader import Calibration
    from rag.train.ranking import fit_ranker, holds_answer, ranked

    records = _records(seed=1, separation=1.0, cosine_signal=0.2)
    ranker = fit_ranker(records["answerable"])
    assert ranker.rank_cosine_weight > 10 * abs(ranker.rank_reader_weight)

    def top1(ranker: Calibration) -> float:
        rows = [ranked(row, ranker) for row in records["answerable"]]
        return float(np.mean([holds_answer(row, row["texts"][:1]) for row in rows]))

    assert top1(ranker) > 0.95 and top1(Calibration()) < 0.4


def test_cross_validation_keeps_the_budget_and_credits_a_better_ranker() -> None:
    from rag.train.calibrate import FALSE_REFUSAL_BUDGET, cross_validate

    weak = cross_validate(_records(seed=1, separation=1.0), repeats=2)
    assert weak["false_refusal_rate"] <= FALSE_REFUSAL_BUDGET + 0.02
    assert weak["top1_sentence_has_answer"] < 0.4
    # the answering candidate has a higher cosine: the ranker finds it, and its in-context score
    # (now among the two re-read) tells answerable questions from the others
    sharp = cross_validate(_records(seed=1, separation=4.0, cosine_signal=0.2), repeats=2)
    assert sharp["false_refusal_rate"] <= FALSE_REFUSAL_BUDGET + 0.02
    assert sharp["top1_sentence_has_answer"] > 0.95
    assert sharp["answer_accuracy"] > 0.9
    assert sharp["outside_refused"] > weak["outside_refused"] + 0.3
    assert sharp["adversarial_refused"] > weak["adversarial_refused"] + 0.3
