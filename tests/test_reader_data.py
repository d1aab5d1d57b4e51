"""The reader's training pairs: near-miss questions built from answerable ones."""

from __future__ import annotations

import random

import pytest

from rag.train.reader_data import build_pairs, swap_question, swap_word
from rag.train.squad import load_articles, split_articles

ARTICLE = (
    "The Normans conquered England in 1066. They built castles and founded monasteries. "
    "Their language was French. The duke invaded southern Italy and ruled Sicily."
)


def test_word_swap_changes_a_word_the_sentence_supports() -> None:
    question = "What country did the Normans conquer in 1066?"
    sentence = "The Normans conquered England in 1066."
    for seed in range(5):
        swapped = swap_word(question, sentence, ARTICLE, random.Random(seed))
        assert swapped is not None and swapped != question
        # "conquer" (held by the sentence, by stem) is what changed, for a word it lacks
        assert "conquer" not in swapped and swapped.startswith("What country did the Normans ")


def test_word_swap_needs_a_supported_word() -> None:
    question = "Who ruled Sicily?"  # no lower-case content word of the sentence
    assert swap_word(question, "Their language was French.", ARTICLE, random.Random(0)) is None


def test_name_swap_takes_a_name_from_the_article() -> None:
    swapped = swap_question(
        "When did the Normans conquer England?",
        "The Normans conquered England in 1066.",
        ARTICLE,
        random.Random(0),
    )
    assert swapped is not None and "England" not in swapped
    assert any(name in swapped for name in ("Italy", "Sicily", "French"))


@pytest.mark.slow
def test_pairs_hold_every_kind_and_near_misses_are_negatives() -> None:
    articles = split_articles(load_articles()).train[:20]
    pairs = build_pairs(articles, 200, swap_share=1.0, word_swap_share=1.0)
    kinds = {pair.kind for pair in pairs}
    assert {"positive", "paragraph", "other_article", "swapped", "word_swapped"} <= kinds
    for pair in pairs:
        if pair.kind == "positive":
            a, b = pair.answer
            assert 0 <= a < b <= len(pair.sentence)
        else:
            assert pair.answer is None
    # the defaults of the first two training stages add no word swaps
    assert "word_swapped" not in {p.kind for p in build_pairs(articles, 100)}


@pytest.mark.slow
def test_context_share_reads_own_paragraph_pairs_after_the_sentence_before() -> None:
    from rag.reader import TITLE_SEPARATOR

    articles = split_articles(load_articles()).train[:20]
    plain = build_pairs(articles, 200)
    read_in_context = build_pairs(articles, 200, context_share=1.0)
    # the same pairs in the same order (the context has a generator of its own) ...
    assert [(p.question, p.sentence, p.answer, p.kind) for p in plain] == [
        (p.question, p.sentence, p.answer, p.kind) for p in read_in_context
    ]
    changed = 0
    for before, after in zip(plain, read_in_context, strict=True):
        if before.kind == "other_article" or before.title == after.title:
            assert before.title == after.title  # other articles' sentences are read alone
            continue
        # ... a sentence that has one is read after the sentence before it
        title, previous = after.title.split(TITLE_SEPARATOR, 1)
        assert title == before.title and previous.strip()
        changed += 1
    assert changed > len(plain) / 3


@pytest.mark.slow
def test_same_article_negatives_come_from_other_paragraphs_and_lack_the_answer() -> None:
    from collections import Counter

    articles = split_articles(load_articles()).train[:20]
    plain = build_pairs(articles, 200)
    with_same = build_pairs(articles, 200, same_article_share=1.0)
    # every other pair is unchanged (the new negatives are drawn by a generator of their own)
    key = lambda p: (p.question, p.title, p.sentence, p.answer, p.kind)  # noqa: E731
    assert Counter(map(key, plain)) == Counter(
        key(p) for p in with_same if p.kind != "same_article"
    )
    near = [p for p in with_same if p.kind == "same_article"]
    assert len(near) > 100
    for pair in near:
        assert pair.answer is None
        article = next(a for a in articles if a.display_title == pair.title)
        question = next(
            (qa, paragraph)
            for paragraph in article.paragraphs
            for qa in paragraph.qas
            if qa.question == pair.question and not qa.impossible
        )
        qa, paragraph = question
        assert pair.sentence not in paragraph.context  # another paragraph of the article
        assert qa.answers[0][0].lower() not in pair.sentence.lower()


def test_passage_window_holds_its_sentence_and_stays_chunk_sized() -> None:
    from rag.train.passage_data import PASSAGE_CHARS, window
    from rag.train.reader_data import sentences_of

    text = " ".join(f"Sentence number {i} says something about topic {i}." for i in range(60))
    spans = sentences_of(text)
    for seed in range(20):
        keep = seed * 3
        a, b = window(text, spans, keep, random.Random(seed))
        assert a <= spans[keep][0] and spans[keep][1] <= b
        assert b - a <= PASSAGE_CHARS
        assert (a, b) != spans[keep]  # grown to neighbours while they fit
    # a sentence longer than a window is its own window
    long_text = "word " * 400 + "end."
    assert window(long_text, sentences_of(long_text), 0, random.Random(0)) == (0, len(long_text))


@pytest.mark.slow
def test_passage_pairs_hold_their_answers_and_negatives_lack_them() -> None:
    from rag.train.passage_data import PASSAGE_CHARS, build_passage_pairs

    articles = split_articles(load_articles()).train[:20]
    pairs = build_passage_pairs(articles, 200, swap_share=1.0, same_article_share=1.0)
    kinds = {pair.kind for pair in pairs}
    assert {"positive", "other_article", "same_article", "swapped"} <= kinds
    answers: dict[str, set[str]] = {}  # a question text can recur with other answers
    for article in articles:
        for paragraph in article.paragraphs:
            for qa in paragraph.qas:
                if qa.answers:
                    answers.setdefault(qa.question, set()).add(qa.answers[0][0])
    for pair in pairs:
        if pair.kind == "positive":
            a, b = pair.answer
            assert pair.sentence[a:b] in answers[pair.question]
        else:
            assert pair.answer is None
        if pair.kind in ("positive", "other_article", "same_article"):
            # one SQuAD sentence can outgrow a window on its own; windows of several do not
            assert len(pair.sentence) <= PASSAGE_CHARS or ". " not in pair.sentence[:-2]
    for pair in pairs:
        if pair.kind == "same_article":
            assert all(a.lower() not in pair.sentence.lower() for a in answers[pair.question])
