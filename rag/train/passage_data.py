"""Training pairs for a passage reader: the question against a window of consecutive
sentences (at most ``PASSAGE_CHARS``, about one of our chunks), not one sentence.

Read whole, a passage gives the reader what a lone sentence lacks: what "he" or "it" stands
for, which sentence continues which, and every other sentence to compare against. For a
question of the training articles:

- positive: a window of its paragraph holding the gold answer sentence (at a random place in
  the window), with the answer span;
- a window of another part of its own paragraph without the answer sentence, where the
  paragraph is longer than one window (no answer);
- a window around the best BM25 match in another article (no answer: the question's own
  article is not indexed);
- for ``same_article_share`` of the questions, a window around the best BM25 match in another
  paragraph of its own article that does not hold the answer text (no answer; the matching
  sentence alone where the window around it would hold the answer text);
- for ``swap_share`` of the questions, a near-miss question (a name or number swapped, as in
  ``reader_data.swap_question``) against the positive window (no answer);
- SQuAD 2.0's adversarial unanswerable questions against the window of their paragraph that
  holds the plausible (wrong) answer (no answer).
"""

from __future__ import annotations

import random

from rag.train.reader_data import (
    OtherArticleSearch,
    Pair,
    containing,
    sample_questions,
    sentences_of,
    swap_question,
)
from rag.train.squad import Article

PASSAGE_CHARS = 1000  # the default chunk size (rag.config chunk_size)


def window(
    text: str, spans: list[tuple[int, int]], keep: int, rng: random.Random
) -> tuple[int, int]:
    """Char range of consecutive sentences of ``text`` holding sentence ``keep``, at most
    PASSAGE_CHARS long where the sentences allow, with ``keep`` at a random place in it."""
    first = last = keep
    grow_left = rng.random()
    while True:
        options = []
        if first > 0 and spans[last][1] - spans[first - 1][0] <= PASSAGE_CHARS:
            options.append("left")
        if last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= PASSAGE_CHARS:
            options.append("right")
        if not options:
            return spans[first][0], spans[last][1]
        side = (
            options[0] if len(options) == 1 else ("left" if rng.random() < grow_left else "right")
        )
        if side == "left":
            first -= 1
        else:
            last += 1


def _outside_window(
    spans: list[tuple[int, int]], taken: tuple[int, int], rng: random.Random, text: str
) -> tuple[int, int] | None:
    """A window of sentences that do not overlap ``taken`` (None when the rest is too short)."""
    rest = [i for i, (a, b) in enumerate(spans) if b <= taken[0] or a >= taken[1]]
    if not rest:
        return None
    keep = rng.choice(rest)
    first = last = keep
    while first - 1 in rest and spans[last][1] - spans[first - 1][0] <= PASSAGE_CHARS:
        first -= 1
    while last + 1 in rest and spans[last + 1][1] - spans[first][0] <= PASSAGE_CHARS:
        last += 1
    a, b = spans[first][0], spans[last][1]
    return (a, b) if len(text[a:b].split()) >= 12 else None


def build_passage_pairs(
    articles: list[Article],
    max_questions: int,
    seed: int = 13,
    swap_share: float = 0.25,
    skip_questions: int = 0,
    same_article_share: float = 0.5,
) -> list[Pair]:
    """Passage pairs (``Pair.sentence`` holds the passage) for up to ``max_questions`` sampled
    answerable questions after the first ``skip_questions``, plus every adversarial
    unanswerable question of ``articles``; shuffled."""
    rng = random.Random(seed)
    answerable, impossible = sample_questions(articles, rng, skip_questions, max_questions)
    search = OtherArticleSearch(articles)
    questions = [articles[ai].paragraphs[pi].qas[qi] for ai, pi, qi in answerable]
    outside = search.best_outside(
        [(qa.question, ai) for qa, (ai, _, _) in zip(questions, answerable, strict=True)]
    )
    same_article = search.best_same_article(
        [
            (qa.question, ai, pi, qa.answers[0][0])
            for qa, (ai, pi, _) in zip(questions, answerable, strict=True)
        ]
    )

    def around_row(row: int, lacking: str = "") -> tuple[str, str]:
        """(title, window) around search row ``row`` in its paragraph; the row's sentence
        alone where the window would hold ``lacking`` (an answer text)."""
        ai, title, sentence = search.rows[row]
        text = articles[ai].paragraphs[search.paragraphs[row]].context
        spans = sentences_of(text)
        keep = next((i for i, (a, b) in enumerate(spans) if text[a:b] == sentence), 0)
        a, b = window(text, spans, keep, rng)
        if lacking and lacking.lower() in text[a:b].lower():
            return title, sentence
        return title, text[a:b]

    pairs: list[Pair] = []
    for (ai, pi, _), qa, other, near in zip(
        answerable, questions, outside, same_article, strict=True
    ):
        article = articles[ai]
        text, title = article.paragraphs[pi].context, article.display_title
        spans = sentences_of(text)
        answer_text, start = qa.answers[0]
        gold = containing(spans, start, start + len(answer_text))
        if gold is None or text[start : start + len(answer_text)] != answer_text:
            continue
        a, b = window(text, spans, gold, rng)
        passage = text[a:b]
        answer = (start - a, start - a + len(answer_text))
        pairs.append(Pair(qa.question, title, passage, answer, "positive"))
        rest = _outside_window(spans, (a, b), rng, text)
        if rest is not None:
            pairs.append(Pair(qa.question, title, text[rest[0] : rest[1]], None, "paragraph"))
        if other is not None:
            pairs.append(Pair(qa.question, *around_row(other), None, "other_article"))
        if near is not None and rng.random() < same_article_share:
            pairs.append(
                Pair(qa.question, *around_row(near, lacking=answer_text), None, "same_article")
            )
        if rng.random() < swap_share:
            article_text = " ".join(p.context for p in article.paragraphs)
            swapped = swap_question(qa.question, text[slice(*spans[gold])], article_text, rng)
            if swapped:
                pairs.append(Pair(swapped, title, passage, None, "swapped"))
    for ai, pi, qi in impossible:
        article = articles[ai]
        text = article.paragraphs[pi].context
        qa = article.paragraphs[pi].qas[qi]
        spans = sentences_of(text)
        keep = rng.randrange(len(spans))
        for plausible_text, start in qa.plausible[:1]:
            found = containing(spans, start, start + len(plausible_text))
            keep = found if found is not None else keep
        a, b = window(text, spans, keep, rng)
        pairs.append(Pair(qa.question, article.display_title, text[a:b], None, "adversarial"))
    rng.shuffle(pairs)
    return pairs
