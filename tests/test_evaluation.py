"""Evaluation without a pipeline: question-set files, matching, scoring, metrics, comparisons,
gates, BEIR metric functions and the HTML report, on hand-made answers and rankings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from rag.answer import Answer, Citation, RetrievedInfo
from rag.evaluation import (
    METRICS,
    BeirDataset,
    Case,
    EvalItem,
    EvalRun,
    EvaluationError,
    ItemResult,
    answer_sentences,
    beir_collection_name,
    check_bounds,
    compare_runs,
    compute_metrics,
    contains_evidence,
    doc_filename,
    load_beir,
    load_question_set,
    load_run,
    matches_alternative,
    missing_groups,
    mrr_at_k,
    ndcg_at_k,
    parse_bounds,
    percentile,
    rank_documents,
    recall_at_k,
    run_evaluation,
    score_item,
    write_corpus_files,
)
from rag.report import LATENCY_CHART, METRICS_CHART, render_html, write_report

ROOT = Path(__file__).resolve().parent.parent
SEED_ARTICLE = ROOT / "seeds" / "china_russia_military_supply.txt"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# Question-set files --------------------------------------------------------------------------


VALID_YAML = """
name: demo
questions:
  - id: q1
    question: "What share came from China?"
    expected: [["90%", "90 percent"]]
    evidence: "90% of Russia's microelectronics"
    source: article.txt
  - id: 2
    question: Which firms?
    expected: Hikvision
  - id: q3
    question: Which parts?
    expected: ["tanks", ["armored vehicles", "armoured vehicles"]]
  - id: q4
    question: Who won the World Cup?
    answerable: false
conversations:
  - id: c1
    turns:
      - {question: "How much came from China?", expected: [["90%"]]}
      - {question: "And machine tools?", expected: ["70%"], evidence: ["70%", "seventy"]}
      - {id: c1-last, question: "What did it cost?", answerable: false}
"""


def test_yaml_set_loads_with_shorthands_and_turn_ids(tmp_path: Path) -> None:
    question_set = load_question_set(write(tmp_path / "set.yaml", VALID_YAML))
    items = {item.id: item for item in question_set.items()}
    assert question_set.name == "demo"
    assert list(items) == ["q1", "2", "q3", "q4", "c1.1", "c1.2", "c1-last"]
    assert items["q1"].case.expected == [["90%", "90 percent"]]
    assert items["q1"].case.evidence == ["90% of Russia's microelectronics"]
    assert items["2"].case.expected == [["Hikvision"]]  # bare string: one group
    assert items["q3"].case.expected == [["tanks"], ["armored vehicles", "armoured vehicles"]]
    assert items["c1.2"].case.expected == [["70%"]]  # one-string list: one group
    assert items["c1.2"].case.evidence == ["70%", "seventy"]
    assert not items["q4"].case.answerable and items["q4"].case.expected is None
    assert (items["c1.2"].conversation, items["c1.2"].turn) == ("c1", 2)
    assert items["q1"].conversation is None


def test_jsonl_set_loads_questions_and_conversations(tmp_path: Path) -> None:
    lines = [
        {"id": "a", "question": "What share?", "expected": [["90%"]], "evidence": "90%"},
        {},  # placeholder for a blank line
        {"id": "c", "turns": [{"question": "First?"}, {"question": "And then?"}]},
        {"id": "u", "question": "Off topic?", "answerable": False},
    ]
    text = "\n".join("" if not line else json.dumps(line) for line in lines) + "\n"
    question_set = load_question_set(write(tmp_path / "my-set.jsonl", text))
    assert question_set.name == "my-set"
    assert [item.id for item in question_set.items()] == ["a", "u", "c.1", "c.2"]


@pytest.mark.parametrize(
    ("name", "text", "fragments"),
    [
        (
            "bad.yaml",
            "questions:\n  - id: q1\n    question: [unclosed\n",
            ["line 4", "invalid YAML"],
        ),
        ("list.yaml", "- id: q1\n  question: x\n", ["mapping"]),
        (
            "missing.yaml",
            "questions:\n  - id: q1\n    question: Fine?\n  - id: q2\n    answerable: true\n",
            ["questions[1]", "id 'q2'", "line 4", "question", "Field required"],
        ),
        (
            "dup.yaml",
            'questions:\n  - {id: q1, question: "One?"}\n  - {id: q1, question: "Two?"}\n',
            ["questions[1]", "duplicate id 'q1'", "first used by questions[0]"],
        ),
        (
            "dup-turn.yaml",
            'questions:\n  - {id: c1.2, question: "One?"}\nconversations:\n'
            '  - id: c1\n    turns: [{question: "A?"}, {question: "B?"}]\n',
            ["conversations[0]", "duplicate id 'c1.2'"],
        ),
        (
            "ambiguous.yaml",
            'questions:\n  - {id: q1, question: "One?", expected: [a, b]}\n',
            ["questions[0]", "ambiguous", "[['a', 'b']]", "[['a'], ['b']]"],
        ),
        (
            "typo.yaml",
            'questions:\n  - {id: q1, question: "One?", expect: [[a]]}\n',
            ["questions[0]", "expect", "unknown field"],
        ),
        (
            "unanswerable.yaml",
            'questions:\n  - {id: q1, question: "One?", answerable: false, expected: x}\n',
            ["questions[0]", "unanswerable", "expected"],
        ),
        ("empty.yaml", "name: nothing\n", ["no questions"]),
        ("words.yaml", "questions:\n  - {id: q1, question: '???'}\n", ["must contain words"]),
        ("bad.jsonl", '{"id": "a", "question": "A?"}\n\n{"id": "b", "question": \n', ["line 3"]),
        (
            "noq.jsonl",
            '{"id": "a", "question": "A?"}\n{"id": "b", "expected": "x"}\n',
            ["line 2", "question", "Field required"],
        ),
        (
            "dup.jsonl",
            '{"id": "a", "question": "A?"}\n{"id": "b", "question": "B?"}\n'
            '{"id": "a", "question": "C?"}\n',
            ["line 3", "duplicate id 'a'", "first used on line 1"],
        ),
        ("array.jsonl", '["not", "an", "object"]\n', ["line 1", "JSON object"]),
        ("set.txt", "questions: []\n", ["unknown question-set format"]),
    ],
)
def test_invalid_sets_name_the_place_and_the_problem(
    tmp_path: Path, name: str, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(EvaluationError) as caught:
        load_question_set(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_set_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="no such question set"):
        load_question_set(tmp_path / "absent.yaml")


def test_seed_set_is_well_formed_and_its_evidence_is_in_the_article() -> None:
    question_set = load_question_set(ROOT / "evals" / "seed.yaml")
    items = question_set.items()
    article = SEED_ARTICLE.read_text(encoding="utf-8")
    answerable = [item for item in items if item.case.answerable]
    assert len([q for q in question_set.questions if q.answerable]) >= 20
    assert len([q for q in question_set.questions if not q.answerable]) >= 8
    assert len(question_set.conversations) >= 3
    for item in answerable:
        assert item.case.evidence, item.id
        assert contains_evidence(article, item.case.evidence), item.id
        assert item.case.source == SEED_ARTICLE.name
        # the expected answer is in the article, so a correct system can produce it
        assert not missing_groups(article, item.case.expected or []), item.id


# Matching ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "alternative", "expected"),
    [
        ("About 90% came from China [1].", "90%", True),
        ("about NINETY   percent", "ninety percent", True),
        ("Made in\nthe United\tStates.", "united states", True),
        ("It rose in 1990.", "90", False),  # a number must start at a word boundary
        ("It cost 900 dollars.", "90", False),  # ... and end at one
        ("It cost $900 million.", "$900 million", True),
        ("Chinese drones were built.", "drone", True),  # word prefix: plurals match
        ("It was a restart.", "start", False),
        ("See the source [1].", "1", False),  # citation markers are not answer text
        ("The “Wuhan” firm", '"wuhan"', True),  # curly quotes normalised
        ("anything", "  ", False),
    ],
)
def test_alternative_matching(answer: str, alternative: str, expected: bool) -> None:
    assert matches_alternative(answer, alternative) is expected


def test_every_group_must_match() -> None:
    groups = [["tanks"], ["aircraft", "planes"], ["missiles"]]
    assert missing_groups("tanks, planes and missiles", groups) == []
    assert missing_groups("tanks and missiles", groups) == [["aircraft", "planes"]]


def test_evidence_is_matched_whitespace_and_case_normalised() -> None:
    chunk = "In 2023, approximately 90% of\nRussia's  MICROELECTRONICS were sourced"
    assert contains_evidence(chunk, ["90% of russia's microelectronics"])
    assert contains_evidence(chunk, ["absent", "approximately 90%"])  # any alternative
    assert not contains_evidence(chunk, ["80% of Russia's microelectronics"])


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Alpha beta. [1] Gamma delta. [2]",  # the pipeline's format
         [("Alpha beta.", [1]), ("Gamma delta.", [2])]),
        ("Alpha beta [1]. Gamma delta [2].",  # the prompt's format
         [("Alpha beta.", [1]), ("Gamma delta.", [2])]),
        ("First one. Second one. [1]", [("First one.", []), ("Second one.", [1])]),
        ("About 90% [1][2]. Done [3, 4]!", [("About 90%.", [1, 2]), ("Done!", [3, 4])]),
        ("Wuhan Tongsheng Technology Co. Ltd., and Hikvision. [1]", [
            ("Wuhan Tongsheng Technology Co. Ltd., and Hikvision.", [1])
        ]),
        ("The U.S. said so [1].", [("The U.S. said so.", [1])]),
        ("Line one [1]\nLine two", [("Line one", [1]), ("Line two", [])]),
        ("", []),
    ],
)  # fmt: skip
def test_answer_sentences_keep_their_markers(
    text: str, sentences: list[tuple[str, list[int]]]
) -> None:
    assert answer_sentences(text) == sentences


# Scoring -------------------------------------------------------------------------------------

ARTICLE = "article.txt"
CHUNK_A = "Recent assessments show a surge in supplies."
CHUNK_B = "In 2023, approximately 90% of Russia's microelectronics were sourced from China."
CHUNK_C = "Nearly 70% of machine tool imports came from China."


def retrieved(*chunks: tuple[str, str, str]) -> list[RetrievedInfo]:
    return [
        RetrievedInfo(chunk_id=chunk_id, source=source, score=1.0 - 0.1 * rank, text=text)
        for rank, (chunk_id, source, text) in enumerate(chunks)
    ]


def citation(n: int, chunk_id: str, text: str, source: str = ARTICLE) -> Citation:
    return Citation(n=n, source=source, chunk_id=chunk_id, start=0, end=len(text), quote=text[:40])


def make_answer(
    text: str,
    *,
    refused: bool = False,
    citations: list[Citation] | None = None,
    chunks: list[RetrievedInfo] | None = None,
) -> Answer:
    return Answer(
        question="q",
        standalone_question="q",
        answer=text,
        refused=refused,
        citations=citations or [],
        retrieved=chunks
        if chunks is not None
        else retrieved(("a", ARTICLE, CHUNK_A), ("b", ARTICLE, CHUNK_B)),
        llm="test",
    )


def item(item_id: str = "q", **fields: Any) -> EvalItem:
    fields.setdefault("question", "What share of microelectronics came from China?")
    return EvalItem(item_id, Case(**fields))


SHARE = {
    "expected": [["90%", "90 percent"]],
    "evidence": "90% of Russia's microelectronics",
    "source": ARTICLE,
}


def test_correct_cited_answer_passes_every_check() -> None:
    answer = make_answer("About 90% came from China. [1]", citations=[citation(1, "b", CHUNK_B)])
    result = score_item(item(**SHARE), answer, 0.5)
    assert result.passed and result.failures == []
    assert result.answer_correct is True
    assert (result.retrieval_hit, result.evidence_rank, result.reciprocal_rank) == (True, 2, 0.5)
    assert result.citation_correct is True
    assert (result.sentences, result.uncited_sentences) == (1, 0)
    assert result.retrieved_ids == ["a", "b"] and result.retrieved_sources == [ARTICLE] * 2
    assert result.citations[0]["chunk_id"] == "b" and result.latency_s == 0.5


def test_wrong_answer_wrong_citation_and_uncited_sentence_are_reported() -> None:
    answer = make_answer(
        "About 80% came from China. [1] It was a lot.", citations=[citation(1, "a", CHUNK_A)]
    )
    result = score_item(item(**SHARE), answer, 0.1)
    assert not result.passed
    assert result.answer_correct is False
    assert result.retrieval_hit is True  # retrieval was fine: the answer step failed
    assert result.citation_correct is False
    assert (result.sentences, result.uncited_sentences) == (2, 1)
    assert result.failures == [
        "answer lacks: 90% | 90 percent",
        "no citation points at the evidence",
        "1 sentence(s) without a citation",
    ]


def test_refused_answerable_counts_for_retrieval_not_for_citations() -> None:
    answer = make_answer("The documents don't say.", refused=True)
    result = score_item(item(**SHARE), answer, 0.1)
    assert result.answer_correct is False
    assert result.retrieval_hit is True and result.reciprocal_rank == 0.5
    assert result.citation_correct is None  # refused: not counted for citation_accuracy
    assert result.sentences == 0
    assert result.failures == ["refused an answerable question"]


def test_empty_answer_is_wrong_and_not_counted_for_citations() -> None:
    result = score_item(item(**SHARE), make_answer("   "), 0.1)
    assert result.empty_answer and not result.refused
    assert result.answer_correct is False
    assert result.citation_correct is None and result.sentences == 0
    assert result.failures == ["empty answer"]


def test_evidence_must_come_from_the_named_source() -> None:
    chunks = retrieved(("x", "other.txt", CHUNK_B), ("b", f"docs/{ARTICLE}", CHUNK_B))
    answer = make_answer(
        "90% [1].", citations=[citation(1, "x", CHUNK_B, "other.txt")], chunks=chunks
    )
    result = score_item(item(**SHARE), answer, 0.1)
    assert result.evidence_rank == 2  # rank 1 holds the text but is the wrong document
    assert result.citation_correct is False


def test_evidence_missing_from_retrieval() -> None:
    answer = make_answer("90% [1].", citations=[citation(1, "a", CHUNK_A)])
    answer.retrieved = retrieved(("a", ARTICLE, CHUNK_A), ("c", ARTICLE, CHUNK_C))
    result = score_item(item(**SHARE), answer, 0.1)
    assert (result.retrieval_hit, result.reciprocal_rank, result.evidence_rank) == (False, 0, None)
    assert "evidence not in the retrieved chunks" in result.failures


def test_items_without_expected_or_evidence_are_not_scored_on_them() -> None:
    answer = make_answer("Something. [1]", citations=[citation(1, "a", CHUNK_A)])
    result = score_item(item(), answer, 0.1)
    assert result.answer_correct is None and result.retrieval_hit is None
    assert result.citation_correct is None and result.passed


def test_unanswerable_items_pass_only_when_refused() -> None:
    refused = score_item(item(answerable=False), make_answer("No.", refused=True), 0.1)
    answered = score_item(
        item(answerable=False), make_answer("Yes. [1]", citations=[citation(1, "a", CHUNK_A)]), 0.1
    )
    assert refused.passed and refused.failures == []
    assert not answered.passed and answered.failures == ["answered an unanswerable question"]


def test_marker_pointing_at_no_citation_is_uncited() -> None:
    answer = make_answer("One. [1] Two. [7]", citations=[citation(1, "b", CHUNK_B)])
    assert score_item(item(), answer, 0.1).uncited_sentences == 1


def test_failed_ask_is_recorded_as_a_failed_item() -> None:
    result = score_item(item(**SHARE), None, 0.0, error="the question is empty")
    assert not result.passed and result.failures[0] == "error: the question is empty"
    assert result.answer_correct is False and result.retrieval_hit is False
    assert result.citation_correct is None


def test_metrics_on_hand_made_results() -> None:
    good = make_answer("About 90% came from China. [1]", citations=[citation(1, "b", CHUNK_B)])
    half = make_answer(
        "About 90% came. [1] Also this.", citations=[citation(1, "a", CHUNK_A)]
    )  # correct text, wrong citation, one uncited sentence
    results = [
        score_item(item("q1", **SHARE), good, 1.0),
        score_item(item("q2", **SHARE), half, 2.0),
        score_item(item("q3", **SHARE), make_answer("No.", refused=True), 3.0),
        score_item(item("q4"), make_answer("Fine. [1]", citations=[citation(1, "a", "x")]), 4.0),
        score_item(item("u1", answerable=False), make_answer("No.", refused=True), 5.0),
        score_item(item("u2", answerable=False), make_answer("Yes."), 6.0),
    ]
    metrics, support = compute_metrics(results)
    assert list(metrics) == list(METRICS)
    assert metrics["answer_accuracy"] == round(2 / 3, 4)  # q1, q2 right; q3 refused
    assert support["answer_accuracy"] == 3  # q4 has no expected answer
    assert metrics["retrieval_hit_rate"] == 1.0 and support["retrieval_hit_rate"] == 3
    assert metrics["mrr"] == 0.5
    assert metrics["citation_accuracy"] == 0.5 and support["citation_accuracy"] == 2  # not q3
    # sentences: q1 1, q2 2 (1 uncited), q4 1, u2 1 (uncited) -> 2 of 5
    assert metrics["uncited_sentence_rate"] == 0.4 and support["uncited_sentence_rate"] == 5
    assert metrics["refusal_accuracy"] == 0.5 and support["refusal_accuracy"] == 2
    assert metrics["false_refusal_rate"] == 0.25 and support["false_refusal_rate"] == 4
    assert metrics["latency_p50_s"] == 3.5
    assert metrics["latency_p95_s"] == 5.75
    assert metrics["n_questions"] == 6


def test_metrics_without_eligible_items_are_null_not_zero() -> None:
    results = [score_item(item("u1", answerable=False), make_answer("No.", refused=True), 1.0)]
    metrics, support = compute_metrics(results)
    for name in ("answer_accuracy", "retrieval_hit_rate", "mrr", "citation_accuracy"):
        assert metrics[name] is None and support[name] == 0
    assert metrics["uncited_sentence_rate"] is None  # refusals assert nothing
    assert metrics["false_refusal_rate"] is None
    assert metrics["refusal_accuracy"] == 1.0
    empty, _ = compute_metrics([])
    assert empty["latency_p50_s"] is None and empty["n_questions"] == 0


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 3.85
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None


# Running question sets (conversation handling) ------------------------------------------------


class RecordingBot:
    """Stands in for RAG: records what it was asked, answers 'answer to <question>'."""

    def __init__(self) -> None:
        from rag.config import load_settings
        from rag.llm import LLMSpec

        self.settings = load_settings(llm="extractive")
        self.default_spec = LLMSpec("extractive")
        self.calls: list[tuple[str, list[tuple[str, str]] | None]] = []
        self.searcher = type("S", (), {"is_empty": lambda self: False})()

    def ask(self, question: str, history: Any = None, **_: Any) -> Answer:
        self.calls.append((question, None if history is None else list(history)))
        answer = make_answer(f"answer to {question}")
        answer.standalone_question = question
        return answer


def test_conversations_run_turn_by_turn_with_history(tmp_path: Path) -> None:
    question_set = load_question_set(write(tmp_path / "set.yaml", VALID_YAML))
    bot = RecordingBot()
    seen: list[tuple[int, int, str]] = []
    run = run_evaluation(
        question_set,
        bot,  # type: ignore[arg-type]
        warm_up=False,
        on_item=lambda done, total, result: seen.append((done, total, result.id)),
    )
    calls = dict(bot.calls)
    assert calls["Which firms?"] is None  # stand-alone questions get no history
    assert calls["How much came from China?"] == []
    assert calls["And machine tools?"] == [
        ("How much came from China?", "answer to How much came from China?")
    ]
    assert calls["What did it cost?"] == [
        ("How much came from China?", "answer to How much came from China?"),
        ("And machine tools?", "answer to And machine tools?"),
    ]
    assert [entry[2] for entry in seen] == [i.id for i in question_set.items()]
    assert seen[-1][:2] == (7, 7)
    assert run.metrics["n_questions"] == 7
    assert run.config["name"] == "demo" and run.config["llm_label"] == "extractive"
    assert "auth" not in run.config


def test_warm_up_asks_one_untimed_question(tmp_path: Path) -> None:
    question_set = load_question_set(write(tmp_path / "set.yaml", VALID_YAML))
    bot = RecordingBot()
    run = run_evaluation(question_set, bot)  # type: ignore[arg-type]
    assert len(bot.calls) == 8 and bot.calls[0] == bot.calls[1]
    assert len(run.items) == 7


# Comparing runs and gates --------------------------------------------------------------------


def run_dict(metrics: dict[str, Any], passed: dict[str, bool]) -> dict[str, Any]:
    return {
        "metrics": {name: metrics.get(name) for name in METRICS},
        "items": [{"id": i, "question": f"question {i}", "passed": p} for i, p in passed.items()],
        "config": {},
    }


def test_compare_reports_deltas_and_flipped_items() -> None:
    before = run_dict(
        {"answer_accuracy": 0.5, "false_refusal_rate": 0.2, "mrr": None},
        {"a": True, "b": False, "c": True, "gone": True},
    )
    after = run_dict(
        {"answer_accuracy": 0.75, "false_refusal_rate": 0.3, "mrr": 0.9},
        {"a": False, "b": True, "c": True, "new": False},
    )
    comparison = compare_runs(before, after)
    deltas = {d.metric: d for d in comparison.deltas}
    assert deltas["answer_accuracy"].delta == 0.25
    assert deltas["answer_accuracy"].verdict == "better"
    assert deltas["false_refusal_rate"].delta == 0.1
    assert deltas["false_refusal_rate"].verdict == "worse"  # lower is better
    assert deltas["mrr"].delta is None and deltas["mrr"].verdict == "n/a"
    assert comparison.now_failing == [("a", "question a")]
    assert comparison.now_passing == [("b", "question b")]
    assert comparison.only_previous == ["gone"] and comparison.only_current == ["new"]
    assert comparison.to_dict()["now_failing"] == ["a"]


def test_load_run_rejects_other_json(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="not a 'rag eval --json' result"):
        load_run(write(tmp_path / "x.json", '{"answer": 1}'))
    with pytest.raises(EvaluationError, match="not a readable JSON"):
        load_run(write(tmp_path / "y.json", "{"))


def test_bounds_parse_and_check() -> None:
    under = parse_bounds(["answer_accuracy=0.8,mrr=0.5", "refusal_accuracy=1"], "under")
    over = parse_bounds(["latency_p95_s=2.5"], "over")
    assert [(b.metric, b.value) for b in under] == [
        ("answer_accuracy", 0.8),
        ("mrr", 0.5),
        ("refusal_accuracy", 1.0),
    ]
    metrics = {"answer_accuracy": 0.7, "mrr": None, "refusal_accuracy": 1.0, "latency_p95_s": 3.0}
    assert check_bounds(metrics, [*under, *over]) == [
        "answer_accuracy = 0.7 is below 0.8",
        "mrr is null (no eligible items), cannot check it",
        "latency_p95_s = 3 is above 2.5",
    ]
    assert check_bounds({"answer_accuracy": 0.8}, under[:1]) == []


@pytest.mark.parametrize(
    ("spec", "kind", "message"),
    [
        ("accuracy=0.8", "under", "unknown metric 'accuracy'"),
        ("answer_accuracy", "under", "expected METRIC=VALUE"),
        ("answer_accuracy=high", "under", "not a number"),
        ("answer_accuracy=nan", "under", "finite"),
        ("false_refusal_rate=0.1", "under", "use --fail-over"),
        ("mrr=0.1", "over", "use --fail-under"),
    ],
)
def test_bad_bounds_are_rejected(spec: str, kind: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bounds([spec], kind)


# BEIR metrics (hand computations) --------------------------------------------------------------


def test_ndcg_matches_a_hand_computation() -> None:
    relevance = {"d1": 1, "d2": 2, "d9": 0}
    ranking = ["d3", "d1", "d2", "d4"]
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(ranking, relevance, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranking, relevance, 10) == pytest.approx(0.619906, abs=1e-6)
    assert ndcg_at_k(["d2", "d1"], relevance, 10) == pytest.approx(1.0)
    assert ndcg_at_k(ranking, relevance, 1) == 0.0
    # a relevant document outside the cut-off still counts in the ideal ranking
    assert ndcg_at_k(["d2", "x"], relevance, 2) == pytest.approx(2 / ideal)
    assert ndcg_at_k(ranking, {"d9": 0}, 10) == 0.0


def test_recall_and_mrr() -> None:
    relevance = {"d1": 1, "d2": 1, "d3": 0}
    ranking = ["d3", "d5", "d1", "d7"]
    assert recall_at_k(ranking, relevance, 100) == 0.5
    assert recall_at_k(ranking, relevance, 2) == 0.0
    assert mrr_at_k(ranking, relevance, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(ranking, relevance, 2) == 0.0
    assert recall_at_k(ranking, {}, 10) == 0.0


class FakeSearcher:
    """Returns chunks of a fixed ranking (several per document), truncated to k."""

    def __init__(self, sources: list[str]):
        self.sources = sources
        self.calls: list[int] = []

    def search(self, query: str, k: int, mode: str, fetch_k: int) -> Any:
        self.calls.append(k)
        chunks = [type("C", (), {"source": source})() for source in self.sources[:k]]
        return type("R", (), {"chunks": chunks})()


def test_documents_rank_by_their_best_chunk_and_fetch_deepens() -> None:
    sources = ["a.txt", "a.txt", "b.txt", "a.txt", "c.txt", "b.txt", "d.txt", "e.txt"]
    searcher = FakeSearcher(sources)
    assert rank_documents(searcher, "q", "hybrid", 4, len(sources), 2) == [
        "a.txt",
        "b.txt",
        "c.txt",
        "d.txt",
    ]
    assert searcher.calls == [4, 8]  # 4 chunks held 3 documents: fetched deeper
    searcher = FakeSearcher(sources)
    assert rank_documents(searcher, "q", "dense", 10, len(sources), 4) == [
        "a.txt",
        "b.txt",
        "c.txt",
        "d.txt",
        "e.txt",
    ]


def write_beir(folder: Path, corpus: list[dict[str, str]], queries: dict[str, str], qrels: str):
    write(folder / "corpus.jsonl", "".join(json.dumps(doc) + "\n" for doc in corpus))
    write(
        folder / "queries.jsonl",
        "".join(json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in queries.items()),
    )
    write(folder / "qrels" / "test.tsv", qrels)


def test_load_beir_reads_judged_queries_only(tmp_path: Path) -> None:
    folder = tmp_path / "Tiny Set"
    write_beir(
        folder,
        [{"_id": "d1", "title": "T", "text": "x"}, {"_id": "d2", "text": "y"}],
        {"1": "first", "2": "second", "3": "unjudged"},
        "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t0\n2\td2\t0\n",
    )
    dataset = load_beir(folder)
    assert dataset.name == "Tiny Set"
    assert dataset.queries == {"1": "first"}  # 2 has no relevant document, 3 no judgments
    assert dataset.qrels == {"1": {"d1": 1, "d2": 0}}
    assert dataset.corpus["d2"] == ("", "y")
    assert beir_collection_name(dataset.name) == "beir-Tiny-Set"
    with pytest.raises(EvaluationError, match=r"splits here: test"):
        load_beir(folder, split="dev")


def test_load_beir_errors(tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    write_beir(folder, [{"_id": "d1", "text": "x"}], {"1": "q"}, "1\td1\t1\n7\td1\t1\n")
    with pytest.raises(EvaluationError, match="1 judged queries missing"):
        load_beir(folder)
    write(folder / "qrels" / "test.tsv", "1\td1\n")
    with pytest.raises(EvaluationError, match=r"test.tsv, line 1"):
        load_beir(folder)
    write(folder / "qrels" / "test.tsv", "1\td1\t1\n")
    write(folder / "corpus.jsonl", '{"_id": "d1"}\nnot json\n')
    with pytest.raises(EvaluationError, match=r"corpus.jsonl, line 2: invalid JSON"):
        load_beir(folder)


def test_corpus_files_are_written_once_and_stale_ones_removed(tmp_path: Path) -> None:
    corpus = {"d1": ("Title", "Body one."), "a/b": ("", "Body two."), "empty": ("", " ")}
    dataset = BeirDataset("ds", corpus, {}, {})
    folder = tmp_path / "cache"
    write(folder / "gone.txt", "old")
    by_file = write_corpus_files(dataset, folder)
    assert set(by_file.values()) == {"d1", "a/b"}
    assert doc_filename("d1") == "d1.txt" and doc_filename("a/b").startswith("h-")
    assert doc_filename("x.txt") != "x.txt.txt" and doc_filename("..") != "...txt"
    assert (folder / "d1.txt").read_text(encoding="utf-8") == "Title\n\nBody one.\n"
    assert (folder / doc_filename("a/b")).read_text(encoding="utf-8") == "Body two.\n"
    assert not (folder / "gone.txt").exists()
    stamp = (folder / "d1.txt").stat().st_mtime_ns
    write_corpus_files(dataset, folder)
    assert (folder / "d1.txt").stat().st_mtime_ns == stamp  # unchanged: not rewritten


# HTML report -----------------------------------------------------------------------------------

EVIL = "<script>alert('x')</script>"


def evil_run() -> EvalRun:
    bad = ItemResult(
        id=f"id{EVIL}",
        question=f"Who? {EVIL}",
        answerable=True,
        standalone_question=f"Standalone {EVIL}",
        expected=[[f"exp{EVIL}"]],
        answer=f"Answer {EVIL} [1]",
        failures=[f"answer lacks: {EVIL}"],
        citations=[{"n": 1, "source": f"{EVIL}.txt", "quote": f"quote {EVIL}", "page": None}],
        retrieved_sources=[f"<img src=x onerror=alert(1)>{EVIL}"],
        latency_s=0.5,
    )
    good = ItemResult(id="ok", question="Fine?", answerable=False, refused=True, passed=True)
    metrics, support = compute_metrics([bad, good])
    config = {"name": f"set{EVIL}", "llm_label": "extractive", "k": 4, "question_set": EVIL}
    return EvalRun(metrics, support, [bad, good], config)


def test_report_escapes_all_text_and_writes_pngs(tmp_path: Path) -> None:
    run = evil_run()
    page = write_report(run, tmp_path / "report")
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;.txt" in html
    assert "Answer &lt;script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    for chart in (METRICS_CHART, LATENCY_CHART):
        data = (tmp_path / "report" / chart).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert html.count("data:image/png;base64,") == 2
    assert "Failed items (1)" in html and "Passed items (1)" in html
    assert "<style>" in html and "<link" not in html  # self-contained


def test_report_shows_comparison(tmp_path: Path) -> None:
    run = evil_run()
    previous = run.to_dict()
    previous["items"][0]["passed"] = True
    previous["metrics"]["refusal_accuracy"] = 0.5
    html = render_html(run, b"png", b"png", compare_runs(previous, run.to_dict()))
    assert "Changes since the previous run" in html
    assert "Now failing (1)" in html and "id&lt;script&gt;" in html
    assert "+0.500" in html
