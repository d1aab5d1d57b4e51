"""The held-out protocol: the SQuAD split is by article and disjoint, and the built question
sets load, point at evidence that is in their corpus, and are the same on every build."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.evaluation import load_question_set, missing_groups
from rag.train.heldout import build
from rag.train.squad import ADVERSARIAL_SPLIT, load_articles, split_articles


@pytest.fixture(scope="module")
def split():
    return split_articles(load_articles())


def test_split_is_by_article_and_disjoint(split) -> None:
    held = [*split.validation, *split.validation_outside, *split.test, *split.test_outside]
    trained = {a.title for a in split.train if a.title != ADVERSARIAL_SPLIT}
    assert not trained & {a.title for a in held}
    # The one article shared by train and validation is split by paragraph, never shared.
    train_half = next(a for a in split.train if a.title == ADVERSARIAL_SPLIT)
    valid_half = next(a for a in split.validation if a.title == ADVERSARIAL_SPLIT)
    assert not {p.context for p in train_half.paragraphs} & {
        p.context for p in valid_half.paragraphs
    }
    assert len(split.test) == 21 and len(split.test_outside) == 6
    assert any(qa.impossible for a in split.test for p in a.paragraphs for qa in p.qas)


def test_built_sets_are_consistent_and_reproducible(tmp_path: Path) -> None:
    build(tmp_path / "a", splits=("test",))
    build(tmp_path / "b", splits=("test",))
    first, second = tmp_path / "a" / "test", tmp_path / "b" / "test"
    for name in ("answerable.yaml", "adversarial.yaml", "outside.yaml"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    corpus = {p.name: p.read_text(encoding="utf-8") for p in (first / "corpus").glob("*.md")}
    answerable = load_question_set(first / "answerable.yaml").questions
    assert len(answerable) >= 100
    for question in answerable:
        assert question.evidence[0] in corpus[question.source], question.id
        assert not missing_groups(question.evidence[0], question.expected), question.id
    for name in ("adversarial.yaml", "outside.yaml"):
        unanswerable = load_question_set(first / name).questions
        assert len(unanswerable) >= 40 and not any(q.answerable for q in unanswerable)
    outside = {q.question for q in load_question_set(first / "outside.yaml").questions}
    assert not any(question in text for text in corpus.values() for question in outside)
