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


def _records(seed: int, separation: float) -> dict[str, list[dict]]:
    """Calibration records (as ``--records`` writes them) whose context score separates the
    answerable questions from the others by ``separation`` standard deviations."""
    rng = np.random.default_rng(seed)
    sizes = {"answerable": 300, "adversarial": 60, "outside": 140}
    records = {}
    for name, size in sizes.items():
        centre = separation if name == "answerable" else 0.0
        records[name] = [
            {"id": f"{name}{i}", "context": float(rng.normal(centre, 1.0)), "dense": 0.5}
            for i in range(size)
        ]
    return records


def test_cross_validation_keeps_the_budget_and_credits_a_better_feature() -> None:
    import pytest

    from rag.train.calibrate import FALSE_REFUSAL_BUDGET, cross_validate

    weak = _records(seed=1, separation=1.0)
    alone = cross_validate(weak, repeats=3)
    assert alone["false_refusal_rate"] <= FALSE_REFUSAL_BUDGET + 0.02
    # the same questions scored by a second, sharper reader: its score as a third feature
    sharp = _records(seed=2, separation=4.0)
    both = cross_validate(weak, sharp, repeats=3)
    assert both["outside_refused"] > alone["outside_refused"] + 0.3
    assert both["adversarial_refused"] > alone["adversarial_refused"] + 0.3
    other = {name: list(reversed(rows)) for name, rows in sharp.items()}
    with pytest.raises(ValueError, match="different questions"):
        cross_validate(weak, other, repeats=1)
