"""Training pairs for the reader, built from SQuAD articles.

Each pair is (question, title, sentence, answer span or None). For a question of the training
articles:

- positive: the sentence (our own splitter, as at answer time) that holds the gold answer;
- negatives: two other sentences of its paragraph (the one sharing most words with the
  question, and a random one): the near misses a retriever brings back;
- a hard negative from another article, the best BM25 match for the question there: what the
  reader sees when the question's own article is not indexed;
- with ``same_article_share``, for that share of questions a hard negative from another
  paragraph of its own article (the best BM25 match there that does not hold the answer): what
  the retriever brings back next to the answer, about the same subject;
- for some questions, a near-miss question written from it (a name or number of the question
  that the answer sentence holds, swapped for another one from the same article) paired with
  the gold sentence: the answer sentence no longer answers it;
- for some questions, a near-miss question with one ordinary word the answer sentence holds
  (a noun, verb or adjective of four or more letters) swapped for another word of the article
  that the sentence lacks, preferring one with the same ending so the question stays
  grammatical: the asked attribute changes, as in SQuAD 2.0's crowd-written near misses;
- SQuAD 2.0's adversarial unanswerable questions: the sentence holding the plausible (wrong)
  answer and another sentence of the paragraph, both negatives.

With ``context_share``, that share of the pairs from a question's own paragraph read the
sentence after the one before it ("Title | sentence before | sentence", as answering's re-read
does; ``rag.reader.with_context``), the answer span still inside the sentence.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from rag.chunking import sentence_spans
from rag.reader import with_context
from rag.train.squad import Article

_NAME = re.compile(r"(?<!^)(?<![.?!] )\b[A-Z][\w'’-]+(?:\s+(?:of\s+|the\s+)?[A-Z][\w'’-]+)*")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Pair:
    question: str
    title: str
    sentence: str
    answer: tuple[int, int] | None  # char span inside ``sentence``; None: does not answer
    kind: str  # positive, paragraph, other_article, same_article, swapped, adversarial, ...


def sentences_of(text: str) -> list[tuple[int, int]]:
    """Sentence spans as the answer pipeline sees them."""
    return [(a, b) for a, b in sentence_spans(text) if text[a:b].strip()] or [(0, len(text))]


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def containing(spans: list[tuple[int, int]], start: int, end: int) -> int | None:
    for i, (a, b) in enumerate(spans):
        if a <= start and end <= b:
            return i
    return None


def swap_question(
    question: str, sentence: str, article_text: str, rng: random.Random
) -> str | None:
    """The question with one name or number that ``sentence`` holds replaced by another one
    from the article that the sentence lacks; None when there is nothing to swap."""
    options: list[tuple[str, list[str]]] = []
    for pattern in (_NAME, _NUMBER):
        found = [m.group(0) for m in pattern.finditer(question)]
        pool = sorted({m.group(0) for m in pattern.finditer(article_text)})
        for phrase in found:
            if phrase not in sentence:
                continue
            others = [p for p in pool if p not in sentence and p.lower() not in question.lower()]
            if others:
                options.append((phrase, others))
    if not options:
        return None
    phrase, others = rng.choice(options)
    return question.replace(phrase, rng.choice(others), 1)


_LOWER_WORD = re.compile(r"\b[a-z]{4,}\b")


def swap_word(question: str, sentence: str, article_text: str, rng: random.Random) -> str | None:
    """The question with one lower-case content word that ``sentence`` also holds (by stem)
    replaced by another content word of the article whose stem neither the sentence nor the
    question holds (with the same last two letters where one exists); None when there is
    nothing to swap."""
    from rag.terms import stem, stopwords

    stop = stopwords()
    held = {stem(w) for w in _words(sentence)}
    asked = {stem(w) for w in _words(question)}
    found = sorted({w for w in _LOWER_WORD.findall(question) if w not in stop and stem(w) in held})
    if not found:
        return None
    pool = sorted(
        w
        for w in set(_LOWER_WORD.findall(article_text))
        if w not in stop and stem(w) not in held and stem(w) not in asked
    )
    if not pool:
        return None
    word = rng.choice(found)
    alike = [w for w in pool if w[-2:] == word[-2:]]
    replacement = rng.choice(alike or pool)
    return re.sub(rf"\b{word}\b", replacement, question, count=1)


def sample_questions(
    articles: list[Article], rng: random.Random, skip: int, limit: int
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(article, paragraph, qa) indices: the answerable questions shuffled by ``rng`` and cut
    to ``[skip:limit]``, and every adversarial unanswerable one, in order."""
    answerable: list[tuple[int, int, int]] = []
    impossible: list[tuple[int, int, int]] = []
    for ai, article in enumerate(articles):
        for pi, paragraph in enumerate(article.paragraphs):
            for qi, qa in enumerate(paragraph.qas):
                (impossible if qa.impossible else answerable).append((ai, pi, qi))
    rng.shuffle(answerable)
    return answerable[skip:limit], impossible


class OtherArticleSearch:
    """BM25 over every sentence of the training articles, to find the best-matching sentence
    outside a question's own article."""

    def __init__(self, articles: list[Article]):
        import bm25s
        import Stemmer

        self.rows: list[tuple[int, str, str]] = []  # (article index, title, sentence)
        self.paragraphs: list[int] = []  # each row's paragraph index in its article
        for index, article in enumerate(articles):
            for number, paragraph in enumerate(article.paragraphs):
                text = paragraph.context
                for a, b in sentences_of(text):
                    self.rows.append((index, article.display_title, text[a:b]))
                    self.paragraphs.append(number)
        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(
            [r[2] for r in self.rows], stopwords="en", stemmer=self.stemmer, show_progress=False
        )
        self.index = bm25s.BM25()
        self.index.index(tokens, show_progress=False)

    def _retrieve(self, questions: list[str], k: int):
        import bm25s

        tokens = bm25s.tokenize(
            questions, stopwords="en", stemmer=self.stemmer, show_progress=False
        )
        results, _ = self.index.retrieve(tokens, k=k, show_progress=False, n_threads=2)
        return results

    def best_outside(self, questions: list[tuple[str, int]], k: int = 20) -> list[int | None]:
        """Per (question, own article): the best-matching row of another article."""
        results = self._retrieve([q for q, _ in questions], k)
        best: list[int | None] = []
        for (_, own), row in zip(questions, results, strict=True):
            best.append(next((int(r) for r in row if self.rows[int(r)][0] != own), None))
        return best

    def best_same_article(
        self, questions: list[tuple[str, int, int, str]], k: int = 50
    ) -> list[int | None]:
        """Per (question, own article, own paragraph, answer text): the best-matching row of
        another paragraph of the same article that does not hold the answer text."""
        results = self._retrieve([q for q, _, _, _ in questions], k)
        best: list[int | None] = []
        for (_, article, paragraph, answer), row in zip(questions, results, strict=True):
            best.append(
                next(
                    (
                        int(r)
                        for r in row
                        if self.rows[int(r)][0] == article
                        and self.paragraphs[int(r)] != paragraph
                        and answer.lower() not in self.rows[int(r)][2].lower()
                    ),
                    None,
                )
            )
        return best


def build_pairs(
    articles: list[Article],
    max_questions: int,
    seed: int = 13,
    swap_share: float = 0.25,
    skip_questions: int = 0,
    word_swap_share: float = 0.0,
    context_share: float = 0.0,
    same_article_share: float = 0.0,
) -> list[Pair]:
    """Up to ``max_questions`` answerable questions (sampled across articles) with their
    negatives, plus every adversarial unanswerable question of ``articles``; shuffled.
    ``skip_questions`` leaves out the first ones of the same seeded sample, so a continued run
    sees questions the first run did not. ``swap_share`` and ``word_swap_share``: the share of
    questions that get a name/number near miss and an ordinary-word near miss;
    ``context_share``: the share of own-paragraph pairs read after the sentence before;
    ``same_article_share``: the share of questions given a negative from another paragraph of
    their own article (each drawn from a generator of its own, so the other pairs are those of
    a run without it)."""
    rng = random.Random(seed)
    context_rng = random.Random(seed + 1)
    same_article_rng = random.Random(seed + 2)

    def titled(title: str, text: str, spans: list[tuple[int, int]], index: int) -> str:
        if index == 0 or not context_share or context_rng.random() >= context_share:
            return title
        return with_context(title, text[slice(*spans[index - 1])])

    def negative(question: str, title: str, text: str, spans: list, index: int, kind: str) -> Pair:
        """Sentence ``index`` of ``text`` as a negative for ``question``."""
        return Pair(
            question, titled(title, text, spans, index), text[slice(*spans[index])], None, kind
        )

    answerable, impossible = sample_questions(articles, rng, skip_questions, max_questions)
    search = OtherArticleSearch(articles)
    outside = search.best_outside(
        [(articles[ai].paragraphs[pi].qas[qi].question, ai) for ai, pi, qi in answerable]
    )
    same_article: list[int | None] = [None] * len(answerable)
    if same_article_share:
        same_article = search.best_same_article(
            [
                (qa.question, ai, pi, qa.answers[0][0])
                for ai, pi, qi in answerable
                for qa in [articles[ai].paragraphs[pi].qas[qi]]
            ]
        )
    pairs: list[Pair] = []
    for (ai, pi, qi), other, near in zip(answerable, outside, same_article, strict=True):
        article = articles[ai]
        paragraph = article.paragraphs[pi]
        qa = paragraph.qas[qi]
        text, title = paragraph.context, article.display_title
        spans = sentences_of(text)
        answer_text, start = qa.answers[0]
        gold = containing(spans, start, start + len(answer_text))
        if gold is None or text[start : start + len(answer_text)] != answer_text:
            continue
        a, b = spans[gold]
        sentence = text[a:b]
        gold_title = titled(title, text, spans, gold)
        pairs.append(
            Pair(
                qa.question,
                gold_title,
                sentence,
                (start - a, start - a + len(answer_text)),
                "positive",
            )
        )
        rest = [i for i in range(len(spans)) if i != gold]
        if rest:
            question_words = _words(qa.question)
            overlap = max(rest, key=lambda i: len(question_words & _words(text[slice(*spans[i])])))
            chosen = {overlap, rng.choice(rest)}
            for i in sorted(chosen):
                pairs.append(negative(qa.question, title, text, spans, i, "paragraph"))
        if other is not None:
            _, other_title, other_sentence = search.rows[other]
            pairs.append(Pair(qa.question, other_title, other_sentence, None, "other_article"))
        if near is not None and same_article_rng.random() < same_article_share:
            _, near_title, near_sentence = search.rows[near]
            pairs.append(Pair(qa.question, near_title, near_sentence, None, "same_article"))
        article_text = " ".join(p.context for p in article.paragraphs)
        if rng.random() < swap_share:
            swapped = swap_question(qa.question, sentence, article_text, rng)
            if swapped:
                pairs.append(Pair(swapped, gold_title, sentence, None, "swapped"))
        if word_swap_share and rng.random() < word_swap_share:
            swapped = swap_word(qa.question, sentence, article_text, rng)
            if swapped:
                pairs.append(Pair(swapped, gold_title, sentence, None, "word_swapped"))
    for ai, pi, qi in impossible:
        article = articles[ai]
        paragraph = article.paragraphs[pi]
        qa = paragraph.qas[qi]
        text, title = paragraph.context, article.display_title
        spans = sentences_of(text)
        chosen: set[int] = set()
        for plausible_text, start in qa.plausible[:1]:
            near = containing(spans, start, start + len(plausible_text))
            if near is not None:
                chosen.add(near)
        chosen.add(rng.randrange(len(spans)))
        for i in sorted(chosen):
            pairs.append(negative(qa.question, title, text, spans, i, "adversarial"))
    rng.shuffle(pairs)
    return pairs
