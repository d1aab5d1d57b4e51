"""The reader model shipped in rag/models/reader: it loads offline, ranks the answering
sentence first with the answer span inside it, refuses what the documents don't say, and fails
with one clear line when its files are missing or corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.reader import MAX_LENGTH, READER_DIR, Reader, ReaderError, with_context

BROWSER = "Web browser"
SENTENCES = [
    (BROWSER, "Browsers are primarily intended to use the World Wide Web."),
    (BROWSER, "The first web browser was invented in 1990 by Sir Tim Berners-Lee."),
    (BROWSER, "Netscape Navigator was the most popular browser of the mid-1990s."),
]


@pytest.fixture(scope="module")
def reader() -> Reader:
    return Reader(READER_DIR)


def test_shipped_model_is_small_and_described() -> None:
    weights = READER_DIR / "model.safetensors"
    assert weights.stat().st_size < 50 * 1024 * 1024
    card = (READER_DIR / "README.md").read_text(encoding="utf-8")
    for needed in ("SQuAD", "CC BY-SA 4.0", "make train-reader", "held-out"):
        assert needed in card
    info = Reader(READER_DIR).info()
    assert info["training"]["data"] and "validation" in info["calibration"]


def test_answering_sentence_ranks_first_with_its_span(reader: Reader) -> None:
    scores = reader.score("Who invented the first web browser?", SENTENCES)
    best = max(range(len(scores)), key=lambda i: scores[i].score)
    assert best == 1
    span = SENTENCES[1][1][scores[1].start : scores[1].end]
    assert "Berners-Lee" in span
    assert len(span) < len(SENTENCES[1][1]) / 2


def test_near_miss_scores_below_the_answer(reader: Reader) -> None:
    """Same sentence, a question it does not answer (asks about a different year's event)."""
    answered = reader.score("When was the first web browser invented?", SENTENCES[1:2])[0]
    unanswered = reader.score("When was the first web browser banned?", SENTENCES[1:2])[0]
    assert answered.score > unanswered.score
    assert answered.score >= reader.calibration.sentence_threshold


def test_off_topic_question_scores_below_the_threshold(reader: Reader) -> None:
    scores = reader.score("How many legs does a spider have?", SENTENCES)
    assert max(s.score for s in scores) < reader.calibration.sentence_threshold


def test_question_longer_than_the_input_is_truncated(reader: Reader) -> None:
    question = "Who invented the first web browser? " + "really " * (MAX_LENGTH * 3)
    scores = reader.score(question, SENTENCES)
    assert len(scores) == len(SENTENCES)
    assert reader.score("anything", []) == []


def test_missing_model_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="make train-reader"):
        Reader(tmp_path / "nowhere").score("q", SENTENCES)


def test_corrupt_model_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "reader"
    shutil.copytree(READER_DIR, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ReaderError, match=r"cannot be loaded.*make train-reader"):
        Reader(broken).score("q", SENTENCES)


def test_cli_reports_a_corrupt_reader_in_one_line(
    seed_index, tmp_path: Path, run_rag, clean_failure
) -> None:
    broken = tmp_path / "reader"
    shutil.copytree(READER_DIR, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    result = run_rag(
        "ask",
        "What share of Russia's microelectronics came from China?",
        "--index",
        seed_index.index_dir,
        "--llm",
        "extractive",
        env={"RAG_READER_DIR": str(broken)},
    )
    clean_failure(result, "reader", "make train-reader")


def test_length_batches_score_each_candidate_as_alone(reader: Reader) -> None:
    """Batching by length (less padding) reorders the work, never the scores."""
    varied = [
        (BROWSER, "Browsers render pages."),
        *SENTENCES,
        (BROWSER, " ".join(s for _, s in SENTENCES) + " It was written on a NeXT computer."),
        (BROWSER, "Mosaic, released in 1993, displayed images inline with text."),
    ]
    question = "Who invented the first web browser?"
    batched = reader.score(question, varied, batch_size=2)
    alone = [reader.score(question, [candidate])[0] for candidate in varied]
    for got, expected in zip(batched, alone, strict=True):
        assert (got.start, got.end) == (expected.start, expected.end)
        assert got.score == pytest.approx(expected.score, abs=1e-3)


def test_sentence_before_tells_the_reader_who_he_is(reader: Reader) -> None:
    """Alone, "He finished it in December 1990." answers for anyone; read after the sentence
    before it, it answers for Berners-Lee, not for Andreessen (what decides answer/refuse)."""
    before = "Tim Berners-Lee wrote the first web browser, WorldWideWeb, at CERN."
    sentence = "He finished it in December 1990."
    right = "When did Tim Berners-Lee finish the first web browser?"
    wrong = "When did Marc Andreessen finish the first web browser?"
    in_context = [(with_context(BROWSER, before), sentence)]
    alone = [(BROWSER, sentence)]
    right_alone, wrong_alone = reader.score(right, alone)[0], reader.score(wrong, alone)[0]
    right_read, wrong_read = reader.score(right, in_context)[0], reader.score(wrong, in_context)[0]
    assert abs(right_alone.score - wrong_alone.score) < 1.0
    assert right_read.score > right_alone.score
    assert right_read.score > wrong_read.score + 2.0
    assert sentence[right_read.start : right_read.end] == "December 1990"


def test_context_joins_title_and_sentence_before() -> None:
    assert with_context("Web browser", "  It was\nnew. ") == "Web browser | It was new."
    assert with_context("", "It was new.") == "It was new."
    assert with_context("Web browser", " ") == "Web browser"


@pytest.fixture(scope="module")
def passage_reader(tmp_path_factory: pytest.TempPathFactory) -> Reader:
    from tests.conftest import passage_reader_copy

    return Reader(passage_reader_copy(tmp_path_factory.mktemp("passage-reader") / "reader"))


def test_passage_read_scores_each_sentence_with_its_own_span(
    reader: Reader, passage_reader: Reader
) -> None:
    from rag.chunking import sentence_spans
    from rag.reader import PASSAGE_MAX_LENGTH

    assert passage_reader.reads_passages and not reader.reads_passages
    assert passage_reader.max_length == PASSAGE_MAX_LENGTH
    passage = " ".join(sentence for _, sentence in SENTENCES)
    spans = sentence_spans(passage)
    assert len(spans) == 3
    scores = passage_reader.score_passages(
        "Who invented the first web browser?", [(BROWSER, passage, spans)]
    )[0]
    best = max(range(3), key=lambda i: scores[i].score)
    assert best == 1
    a, _ = spans[1]
    assert "Berners-Lee" in passage[a + scores[1].start : a + scores[1].end]
    for (a, b), score in zip(spans, scores, strict=True):
        assert 0 <= score.start <= score.end <= b - a  # spans stay inside their sentence


def test_passage_sentences_past_the_input_are_cut_off_not_crashed_on(
    passage_reader: Reader,
) -> None:
    from rag.chunking import sentence_spans

    filler = "Browsers have many tabs and many menus and many settings. " * 60
    passage = filler + SENTENCES[1][1]
    spans = sentence_spans(passage)
    scores = passage_reader.score_passages(
        "Who invented the first web browser?", [(BROWSER, passage, spans)]
    )[0]
    assert len(scores) == len(spans)
    assert scores[-1].score == -1e4  # truncated away: never picked
    assert max(s.score for s in scores[:-1]) > -1e4
