"""`rag eval` and `rag eval-retrieval` end to end: real Chroma in temp dirs, the packaged
embedding model, the extractive answerer (no LLM), click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rag.config import Settings
from rag.evaluation import METRICS, ItemResult, compute_metrics

ROOT = Path(__file__).resolve().parent.parent
SEED_SET = ROOT / "evals" / "seed.yaml"

SMALL_SET = """
name: small
questions:
  - id: share
    question: What share of Russia's microelectronics came from China in 2023?
    expected: [["90%", "90 percent"]]
    evidence: "90% of Russia's microelectronics"
    source: china_russia_military_supply.txt
  - id: offtopic
    question: How long should I boil an egg for a soft yolk?
    answerable: false
conversations:
  - id: talk
    turns:
      - question: Which Chinese firms provide optics for Russian tanks?
        evidence: Optical components for Russian tanks
      - question: And what about machine tool imports?
        expected: [["70%", "70 percent"]]
"""


def rag_cli(*args: str) -> Result:
    from rag.cli import main

    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_SET, encoding="utf-8")
    return path


def eval_args(seed_index: Settings, question_set: Path, *extra: Any) -> list[str]:
    return [
        "eval",
        str(question_set),
        "--index",
        str(seed_index.index_dir),
        "--llm",
        "extractive",
        *[str(e) for e in extra],
    ]


def test_eval_seed_set_end_to_end(seed_index: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out" / "seed.json"
    report = tmp_path / "report"
    result = rag_cli(*eval_args(seed_index, SEED_SET, "--json", out, "--report", report))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert set(data) >= {"metrics", "items", "config"}
    assert list(data["metrics"]) == list(METRICS)
    assert data["metrics"]["n_questions"] == 39 == len(data["items"])
    for name in METRICS:
        value = data["metrics"][name]
        assert value is None or value >= 0
        if name not in ("latency_p50_s", "latency_p95_s", "n_questions"):
            assert value is not None and value <= 1, name  # every metric is eligible here
    required = {"id", "question", "answer", "refused", "passed", "citations", "retrieved_ids"}
    for item in data["items"]:
        assert required <= set(item), item["id"]
        assert item["passed"] == (not item["failures"])
        assert item["latency_s"] > 0 and item["retrieved_ids"]
    # the JSON metrics are exactly those of the JSON items
    results = [ItemResult(**item) for item in data["items"]]
    assert compute_metrics(results)[0] == data["metrics"]
    # follow-ups were asked with the conversation so far
    by_id = {item["id"]: item for item in data["items"]}
    follow_up = by_id["c01.2"]
    assert follow_up["conversation"] == "c01" and follow_up["turn"] == 2
    assert follow_up["standalone_question"] != follow_up["question"]
    assert "microelectronics" in follow_up["standalone_question"]
    assert data["config"]["llm"] == "extractive" and data["config"]["question_set"]
    # the summary table and the report
    assert "answer_accuracy" in result.stdout and "refusal_accuracy" in result.stdout
    page = (report / "report.html").read_text(encoding="utf-8")
    assert (report / "metrics.png").stat().st_size > 1000
    assert (report / "latency.png").stat().st_size > 1000
    failed = [item for item in data["items"] if not item["passed"]]
    assert f"Failed items ({len(failed)})" in page


def test_fail_under_and_fail_over_gate_the_exit_code(
    seed_index: Settings, small_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run.json"
    ok = rag_cli(*eval_args(seed_index, small_set, "--json", out, "--fail-under", "n_questions=4"))
    assert ok.exit_code == 0, ok.output
    metrics = json.loads(out.read_text(encoding="utf-8"))["metrics"]
    assert metrics["n_questions"] == 4
    failing = rag_cli(
        *eval_args(
            seed_index,
            small_set,
            "--fail-under",
            "n_questions=5,refusal_accuracy=0",
            "--fail-over",
            "latency_p50_s=1000",
        )
    )
    assert failing.exit_code == 1
    assert "gate failed: n_questions = 4 is below 5" in failing.stderr
    assert failing.stderr.count("gate failed") == 1
    assert "answer_accuracy" in failing.stdout  # the summary is still printed
    over = rag_cli(*eval_args(seed_index, small_set, "--fail-over", "latency_p95_s=0"))
    assert over.exit_code == 1 and "latency_p95_s" in over.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--fail-under=accuracy=0.5", "unknown metric 'accuracy'"),
        ("--fail-under=false_refusal_rate=0.1", "use --fail-over"),
        ("--fail-over=mrr=0.1", "use --fail-under"),
        ("--fail-under=mrr", "expected METRIC=VALUE"),
    ],
)
def test_bad_gate_is_a_usage_error(
    seed_index: Settings, small_set: Path, option: str, message: str
) -> None:
    result = rag_cli(*eval_args(seed_index, small_set, option))
    assert result.exit_code == 2
    assert message in result.stderr


def test_compare_shows_deltas_and_flipped_items(
    seed_index: Settings, small_set: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first.json"
    assert rag_cli(*eval_args(seed_index, small_set, "--json", first)).exit_code == 0
    previous = json.loads(first.read_text(encoding="utf-8"))
    # pretend the previous run differed: one item flipped each way, one metric changed
    for item in previous["items"]:
        if item["id"] == "offtopic":
            item["passed"] = not item["passed"]
        if item["id"] == "talk.1":
            item["passed"] = not item["passed"]
    previous["metrics"]["n_questions"] = 3
    previous["items"].append({"id": "retired", "question": "Old?", "passed": True})
    edited = tmp_path / "previous.json"
    edited.write_text(json.dumps(previous))
    result = rag_cli(
        *eval_args(seed_index, small_set, "--compare", edited, "--report", tmp_path / "r")
    )
    assert result.exit_code == 0, result.output
    current = {item["id"]: item for item in json.loads(first.read_text(encoding="utf-8"))["items"]}
    flipped_to_fail = [i for i in ("offtopic", "talk.1") if not current[i]["passed"]]
    flipped_to_pass = [i for i in ("offtopic", "talk.1") if current[i]["passed"]]
    out = result.stdout
    assert "Compared with" in out and "+1" in out  # n_questions 3 -> 4
    failing_part = out[out.index("Now failing") : out.index("Now passing")]
    passing_part = out[out.index("Now passing") :]
    for item_id in flipped_to_fail:
        assert f"{item_id}:" in failing_part
    for item_id in flipped_to_pass:
        assert f"{item_id}:" in passing_part
    assert "Only in the previous run: retired" in out
    assert "Changes since the previous run" in (tmp_path / "r" / "report.html").read_text(
        encoding="utf-8"
    )


def test_compare_with_a_non_result_file_fails_before_running(
    seed_index: Settings, small_set: Path, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    result = rag_cli(*eval_args(seed_index, small_set, "--compare", bogus))
    assert result.exit_code == 1
    assert "not a 'rag eval --json' result" in result.stderr


def test_invalid_set_and_empty_index_are_clear_errors(seed_index: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "question": "A?"}\n{"id": "b"}\n')
    result = rag_cli(*eval_args(seed_index, broken))
    assert result.exit_code == 1
    assert "line 2" in result.stderr and "question" in result.stderr
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "a", "question": "What share came from China?"}\n')
    result = rag_cli("eval", good, "--index", tmp_path / "empty-index", "--llm", "extractive")
    assert result.exit_code == 1
    assert "is empty" in result.stderr and "rag ingest" in result.stderr


# BEIR ------------------------------------------------------------------------------------------

TINY_CORPUS = [
    ("volcano", "Volcanic eruptions", "Magma rises through the crust and erupts as lava."),
    ("volcano2", "Ash clouds", "Volcanic ash from eruptions grounds aircraft for days."),
    ("bread", "Sourdough baking", "A sourdough starter of flour and water leavens the bread."),
    ("bees", "Honey bees", "Bees pollinate crops and make honey in their hives."),
    ("chess", "Chess openings", "The Sicilian Defence is a popular chess opening."),
    ("tides", "Ocean tides", "The moon's gravity pulls the oceans, causing tides."),
    ("python", "Python language", "Python is a programming language with readable syntax."),
    ("coffee", "Coffee roasting", "Roasting coffee beans develops their aroma and flavour."),
    ("glacier", "Glaciers", "Glaciers are rivers of ice that carve valleys over centuries."),
    ("violin", "Violin making", "Luthiers carve violins from spruce and maple wood."),
    ("tennis", "Tennis scoring", "Tennis games are scored love, fifteen, thirty, forty."),
    ("orbit", "Satellite orbits", "Satellites in geostationary orbit match Earth's rotation."),
]
TINY_QUERIES = {
    "1": "How does lava erupt from a volcano?",
    "2": "What makes sourdough bread rise?",
    "3": "Why do the oceans have tides?",
    "4": "Which chess opening is the Sicilian?",
    "5": "Do bees make honey?",
}
TINY_QRELS = [("1", "volcano", 2), ("1", "volcano2", 1), ("2", "bread", 1), ("3", "tides", 1),
              ("4", "chess", 1), ("5", "bees", 1)]  # fmt: skip


def make_tiny_beir(folder: Path, corpus: list[tuple[str, str, str]] = TINY_CORPUS) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc_id, title, text in corpus:
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as handle:
        for query_id, text in {**TINY_QUERIES, "99": "unjudged query"}.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in TINY_QRELS]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_eval_retrieval_on_a_tiny_beir_dataset(tmp_path: Path) -> None:
    dataset = make_tiny_beir(tmp_path / "tiny")
    index = tmp_path / "work" / "index"
    out = tmp_path / "tiny.json"
    result = rag_cli("eval-retrieval", "--beir", dataset, "--index", index, "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["dataset"] == "tiny" and data["split"] == "test" and data["k"] == 10
    assert data["n_queries"] == 5
    assert set(data["metrics"]) == {"dense", "bm25", "hybrid"}
    for mode, scores in data["metrics"].items():
        assert set(scores) == {"ndcg@10", "recall@100", "mrr@10"}
        assert set(data["per_query"][mode]) == set(TINY_QUERIES)
        # these queries are easy: each retriever puts a relevant document first
        assert scores["mrr@10"] == 1.0, (mode, data["per_query"][mode])
        assert scores["ndcg@10"] >= 0.9, mode
    assert data["metrics"]["dense"]["recall@100"] == 1.0
    assert data["metrics"]["hybrid"]["recall@100"] == 1.0
    config = data["config"]
    assert config["collection"] == "beir-tiny"
    assert config["documents"] == 12 and config["chunks"] >= 12
    assert config["ingest"]["added"] == 12
    cache = tmp_path / "work" / "data" / "beir" / "tiny"
    assert sorted(p.name for p in cache.glob("*.txt")) == sorted(
        f"{doc_id}.txt" for doc_id, _, _ in TINY_CORPUS
    )
    assert (
        (cache / "volcano.txt")
        .read_text(encoding="utf-8")
        .startswith("Volcanic eruptions\n\nMagma")
    )
    for name in ("dense", "bm25", "hybrid", "ndcg@10", "recall@100"):
        assert name in result.stdout

    # a second run re-embeds nothing; a changed corpus is ingested incrementally
    again = rag_cli("eval-retrieval", "--beir", dataset, "--index", index, "--json", out)
    assert again.exit_code == 0, again.output
    ingest = json.loads(out.read_text(encoding="utf-8"))["config"]["ingest"]
    assert (ingest["unchanged"], ingest["chunks_written"]) == (12, 0)
    extra = ("rain", "Rainfall", "Clouds release rain when droplets grow heavy.")
    make_tiny_beir(dataset, [*TINY_CORPUS[1:], extra])
    third = rag_cli("eval-retrieval", "--beir", dataset, "--index", index, "--json", out)
    assert third.exit_code == 0, third.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (data["config"]["ingest"]["added"], data["config"]["ingest"]["deleted"]) == (1, 1)
    assert data["config"]["ingest"]["unchanged"] == 11
    # 'volcano' is gone from the corpus but still judged: query 1 can't be perfect any more
    assert data["per_query"]["bm25"]["1"]["recall@100"] == 0.5


def test_eval_retrieval_reports_a_missing_split(tmp_path: Path) -> None:
    dataset = make_tiny_beir(tmp_path / "tiny")
    result = rag_cli("eval-retrieval", "--beir", dataset, "--split", "dev", "--index", tmp_path)
    assert result.exit_code == 1
    assert "dev.tsv: missing (splits here: test)" in result.stderr
