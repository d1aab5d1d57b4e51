"""Smoke tests of the benchmark harness (benchmarks/) on tiny inputs: every section produces the
issue-6 JSON contract keys and the report renders. No timing assertions here: speed targets live
in the benchmarks (``make bench``), never in unit tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import answer_latency, ingest_speed, report, retrieval_latency, scifact, synthetic
from benchmarks.common import json_safe, percentile, settings
from benchmarks.run import CONTRACT, assemble, main, missing_keys
from rag.answer.reading import CONTEXT_CANDIDATES, MAX_READER_CANDIDATES
from rag.onnx_encoders import resolve_backend

DOCS = {
    "11": ("Aspirin and platelets", "Aspirin inhibits platelet aggregation. "
           "The effect lasts for days. Low doses are enough."),
    "12": ("Vitamin D and bones", "Vitamin D increases calcium absorption. "
           "Deficiency causes rickets in children. Sunlight helps."),
    "13": ("Sleep and memory", "Sleep consolidates memory. Deprivation impairs recall. "
           "Naps help learning."),
    "14": ("Coffee and alertness", "Caffeine blocks adenosine receptors. It raises alertness. "
           "Tolerance develops quickly."),
    "15": ("Exercise and mood", "Exercise releases endorphins. It reduces anxiety. "
           "Regular activity lifts mood."),
    "16": ("Salt and blood pressure", "High salt intake raises blood pressure. "
           "Reducing salt lowers it. Potassium counters salt."),
}  # fmt: skip
QUERIES = {
    "1": ("Aspirin reduces platelet aggregation.", "11"),
    "2": ("Sleep deprivation impairs memory recall.", "13"),
    "3": ("Salt intake raises blood pressure.", "16"),
}


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """A six-document BEIR folder with three judged test queries."""
    folder = tmp_path / "tinyfact"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": doc, "title": title, "text": text}) + "\n"
            for doc, (title, text) in DOCS.items()
        )
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": text}) + "\n" for q, (text, _) in QUERIES.items())
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{doc}\t1\n" for q, (_, doc) in QUERIES.items())
    )
    return folder


def _has_contract(section: str, data: dict) -> None:
    missing = [key for key in CONTRACT[section] if key not in data]
    assert not missing, f"{section} lacks {missing}"


def test_scifact_section_gives_all_modes(tiny_beir: Path, tmp_path: Path, shared_embedder) -> None:
    out = scifact.run(dataset_dir=tiny_beir, workdir=tmp_path / "work")
    _has_contract("scifact", out)
    for metric in ("ndcg@10", "recall@100"):
        assert set(out[metric]) == {"bm25", "dense", "hybrid"}
        assert all(0.0 <= value <= 1.0 for value in out[metric].values())
    assert out["queries"] == 3 and out["subset"] is False
    assert out["anchors_ndcg@10"]["BM25 (BEIR paper)"] == 0.665


def test_scifact_subset_keeps_judged_documents(tiny_beir: Path, tmp_path: Path) -> None:
    info = scifact.write_subset(tiny_beir, tmp_path / "subset", n_docs=4)
    assert info == {"documents": 4, "queries": 3}
    ids = [json.loads(line)["_id"] for line in (tmp_path / "subset" / "corpus.jsonl").open()]
    assert {"11", "13", "16"} <= set(ids) and len(ids) == 4
    info = scifact.write_subset(tiny_beir, tmp_path / "two", n_docs=3, n_queries=2)
    assert info == {"documents": 3, "queries": 2}
    ids = [json.loads(line)["_id"] for line in (tmp_path / "two" / "corpus.jsonl").open()]
    assert ids[:2] == ["11", "12"] and "13" in ids  # judged for queries 1 and 2, then filler


def test_quick_scifact_uses_a_complete_full_index(
    tiny_beir: Path, tmp_path: Path, shared_embedder
) -> None:
    work = tmp_path / "work"
    bench_settings = settings(index_dir=work / "index", data_dir=work / "data", llm="extractive")
    assert not scifact.full_index_ready(tiny_beir, bench_settings)
    full = scifact.run(dataset_dir=tiny_beir, workdir=work)
    assert scifact.full_index_ready(tiny_beir, bench_settings)
    quick = scifact.run(quick=True, dataset_dir=tiny_beir, workdir=work)
    assert quick["subset"] is False and quick["ndcg@10"] == full["ndcg@10"]
    assert quick["ingest_chunks_written"] == 0


def test_ingest_section_contract(tiny_beir: Path, tmp_path: Path, shared_embedder) -> None:
    out = ingest_speed.run(dataset_dir=tiny_beir, workdir=tmp_path / "work", n_docs=4, repeats=1)
    _has_contract("ingest", out)
    assert out["files"] == 4 and out["chunks"] >= 4
    assert out["reingest_chunks_written"] == 0
    assert out["ratio"] > 0 and out["reingest_ratio"] >= 0


def test_sentence_windows_cover_singles_then_pairs_then_variations() -> None:
    corpus = {doc: DOCS[doc] for doc in ("11", "12")}
    windows = synthetic.windows(corpus, 8)
    assert len(windows) == 8
    assert [w.width for w in windows] == [1] * 6 + [2] * 2
    texts = synthetic.Texts(corpus)
    assert texts.text(windows[0]) == "Aspirin inhibits platelet aggregation."
    # Past the last window: the windows again, each with another abstract's sentence added.
    more = synthetic.windows(corpus, 20)
    assert len(more) == 20 and len(set(map(texts.text, more))) == 20
    varied = [w for w in more if w.cycle == 1]
    assert varied and texts.text(varied[0]).startswith(texts.text(varied[0]._replace(cycle=0)))
    assert texts.key(varied[0]) != texts.key(varied[0]._replace(cycle=0))


def test_million_section_builds_resumably_and_measures_a_change(
    tiny_beir: Path, tmp_path: Path, shared_embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import retrieval_1m

    cache = tmp_path / "cache"
    monkeypatch.setattr(synthetic, "BATCH", 8)
    # An interrupted build: the first 8 chunks written, no completion stamp.
    calls: list[int] = []

    def stop(written: int) -> None:
        calls.append(written)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retrieval_1m.build(24, tiny_beir, cache, after_batch=stop)
    assert calls == [8] and retrieval_1m.built(24, cache) is None
    info = retrieval_1m.build(24, tiny_beir, cache)
    assert info["resumed_at"] == 8 and info["chunks"] == 24
    out = retrieval_1m.run(dataset_dir=tiny_beir, n_chunks=24, n_queries=3, cache=cache)
    _has_contract("retrieval_1m", out)
    assert out["chunks"] == 24 and out["bm25_full_build"]["chunks"] == 24
    change = out["incremental"]
    assert change["new_document_found"] and change["deleted_document_gone"]
    pruning = out["bm25_pruning"]
    assert pruning["queries"] == 3 and pruning["hybrid_pruned_p50_ms"] > 0
    assert "pruning vs" in report.markdown({"retrieval_1m": out})


def test_retrieval_latency_section_contract(
    tiny_beir: Path, tmp_path: Path, shared_embedder
) -> None:
    cache = tmp_path / "cache"
    out = retrieval_latency.run(dataset_dir=tiny_beir, n_chunks=20, n_queries=3, cache=cache)
    _has_contract("retrieval_latency", out)
    assert out["chunks"] == 20 and out["queries"] == 3 and out["index_built_now"]
    assert out["p50_total_ms"] >= out["p50_ms"] > 0
    again = retrieval_latency.run(dataset_dir=tiny_beir, n_chunks=20, n_queries=2, cache=cache)
    assert not again["index_built_now"] and again["chunks"] == 20


def test_answer_latency_section_contract(tmp_path: Path, shared_embedder) -> None:
    out = json_safe(answer_latency.run(llm="extractive", index_dir=tmp_path / "seed", limit=3))
    _has_contract("answer_latency", out)
    assert out["llm"] == "extractive" and out["questions"] == 3
    assert out["llm_calls"] == 0 and out["ttft_p95_s"] is None  # no LLM: no tokens


@pytest.mark.slow
def test_answer_latency_with_the_local_llm(tmp_path: Path, shared_embedder) -> None:
    out = answer_latency.run(index_dir=tmp_path / "seed", limit=1)
    assert out["llm"] == "local" and out["llm_calls"] == 1
    assert out["ttft_p95_s"] <= out["total_p95_s"]


def test_report_and_assembly() -> None:
    sections = {
        "scifact": {
            "ndcg@10": {"bm25": 0.66, "dense": 0.64, "hybrid": 0.75},
            "recall@100": {"bm25": 0.9, "dense": 0.9, "hybrid": 0.95},
            "anchors_ndcg@10": scifact.ANCHORS,
            "queries": 300,
        },
        "ingest": dict.fromkeys(CONTRACT["ingest"], 1.0) | {"ratio": 1.3},
        "retrieval_latency": dict.fromkeys(CONTRACT["retrieval_latency"], 1.0),
        "retrieval_1m": dict.fromkeys(CONTRACT["retrieval_1m"], 1.0) | {"incremental": {}},
        "answer_latency": dict.fromkeys(CONTRACT["answer_latency"], 1.0) | {"llm": "local"},
        "startup": {"startup_s": 9.5, "peak_rss_mb": 900.0, "runs": []},
        "encoder": {
            "speedup_vs_torch": 3.1,
            "scifact_ndcg_delta": -0.002,
            "docs_per_s": {"torch": 12.0, "onnx": 20.0, "onnx-int8": 37.0},
            "reader": {"p95_ms": 80.0},
            "cold_ask": {"wall_s": 2.2, "peak_rss_mb": 460.0},
        },
    }
    results = assemble(sections, {})
    assert results["reader"]["p95_ms"] == 80.0 and results["cold_ask"]["wall_s"] == 2.2
    assert missing_keys(results) == [] and results["startup_s"] == 9.5
    text = report.markdown(results, notes=False)
    assert "0.665" in text and "BM25 + cross-encoder rerank" in text and "0.750" in text
    assert "**met**" in text and "**missed**" in text  # hybrid met, ingest ratio 1.3 missed
    assert missing_keys({"scifact": {"ndcg@10": {}}})[:2] == ["startup_s", "peak_rss_mb"]


def test_statistics_and_json_safety() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert json_safe({"a": [percentile([], 95)], "b": 1.0}) == {"a": [None], "b": 1.0}


def test_run_rejects_unknown_sections() -> None:
    with pytest.raises(SystemExit):
        main(["--only", "nonsense"])


def test_encoder_section_compares_backends_side_by_side(tiny_beir: Path) -> None:
    from benchmarks import encoder
    from rag.evaluation import load_beir

    dataset = load_beir(tiny_beir, "test")
    _, texts = encoder._texts(dataset, None)
    speed = encoder.throughput(texts * 4, rounds=2)
    assert set(speed["docs_per_s"]) == {"torch", "onnx", "onnx-int8", "openvino", "openvino-int8"}
    default = resolve_backend("auto")
    assert default == "openvino"  # a dependency: a default install has it
    assert speed["default_backend"] == default
    assert all(len(rates) == 2 for rates in speed["docs_per_s_rounds"].values())
    cosine = speed["cosine_to_torch"]
    assert cosine["onnx"] > 0.9999 and cosine["openvino"] > 0.9999 and cosine["onnx-int8"] > 0.98
    assert cosine["openvino-int8"] > 0.98
    rates = speed["docs_per_s"]
    # the headline is the default's rate over PyTorch's (from unrounded rates: within the
    # 2-decimal rounding of the figure recomputed from the 0.1-rounded ones)
    assert abs(speed["speedup_vs_torch"] - rates[default] / rates["torch"]) <= 0.011
    quality = encoder.dense_ndcg(dataset, quick=False)
    scores = quality["dense_ndcg@10"]
    assert set(scores) == {"onnx", "onnx-int8", "openvino", "openvino-int8"}
    assert quality["scifact_ndcg_delta"] == round(scores[default] - scores["onnx"], 4)
    assert quality["int8_ndcg_delta"] == round(scores["onnx-int8"] - scores["onnx"], 4)
    reader = encoder.reader_latency(repeats=2)
    assert reader["backend"] == "openvino"
    assert reader["p95_ms"] == reader["openvino"]["p95_ms"] > 0 and reader["onnx"]["p95_ms"] > 0
    assert reader["sentences"] == MAX_READER_CANDIDATES
    assert reader["context_sentences"] == CONTEXT_CANDIDATES
    # a passage reader (reader.json "input": "passage") is timed reading the 4 chunks
    from tests.conftest import passage_reader_copy

    folder = passage_reader_copy(tiny_beir.parent / "passage-reader")
    passages = encoder.reader_latency(repeats=2, folder=folder)
    assert passages["passages"] == 4 and passages["p95_ms"] == passages["openvino"]["p95_ms"] > 0
