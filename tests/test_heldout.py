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


def test_sectioned_layout_holds_the_same_articles_and_questions(tmp_path: Path) -> None:
    """<split>-sectioned: every article becomes a "## Title" section of one of four documents,
    each question points at the document holding its evidence, and the title of a document no
    longer says what its passages are about."""
    from rag.loaders import load_file

    build(tmp_path, splits=("test",))
    plain, sectioned = tmp_path / "test", tmp_path / "test-sectioned"
    documents = sorted((sectioned / "corpus").glob("*.md"))
    assert [p.name for p in documents] == [f"collection_{n}.md" for n in range(1, 5)]
    texts = {p.name: p.read_text(encoding="utf-8") for p in documents}
    articles = list((plain / "corpus").glob("*.md"))
    headings = [h for p in documents for h in load_file(p).headings if h.level == 2]
    assert len(headings) == len(articles)
    for article in articles:
        title, body = article.read_text(encoding="utf-8").split("\n", 1)
        assert sum(f"#{title}\n{body.strip()}\n" in text for text in texts.values()) == 1
    moved = load_question_set(sectioned / "answerable.yaml").questions
    original = load_question_set(plain / "answerable.yaml").questions
    assert [q.question for q in moved] == [q.question for q in original]
    for question in moved:
        assert question.evidence[0] in texts[question.source], question.id
    for name in ("adversarial.yaml", "outside.yaml"):
        assert [q.question for q in load_question_set(sectioned / name).questions] == [
            q.question for q in load_question_set(plain / name).questions
        ]
    assert {load_file(p).title for p in documents} == {
        f"Reference collection {n}" for n in range(1, 5)
    }
