"""ONNX encoders (exported from the packaged weights, cached) run by ONNX Runtime or OpenVINO:
the same vectors and reader scores as PyTorch in fp32, OpenVINO's (bf16 products where the CPU
has them) within 1e-5 cosine and the calibration's tolerance, int8 close, an index kept in one
precision family, and a query path that never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import openvino_runtime
from rag.config import Settings
from rag.embeddings import Embedder
from rag.ingest import ingest
from rag.onnx_encoders import (
    EncoderExportError,
    OnnxEncoder,
    describe_backend,
    exported,
    resolve_backend,
    weights_fingerprint,
)
from rag.reader import READER_DIR, Reader
from rag.store import EmbeddingMismatchError, Store
from tests.conftest import rag_env

TEXTS = [
    "In 2023, approximately 90% of Russia's microelectronics were sourced from China.",
    "The ferry leaves at 07:15 and the crossing takes forty minutes.",
    "Optical components for Russian tanks come from Wuhan Tongsheng Technology Co. Ltd.",
    "Short.",
    "A much longer sentence " * 40,
]
QUESTION = "What share of Russia's microelectronics came from China?"


def test_onnx_embeddings_match_torch_and_int8_stays_close() -> None:
    torch_vectors = Embedder(backend="torch").encode(TEXTS)
    fp32 = Embedder(backend="onnx").encode(TEXTS)
    int8 = Embedder(backend="onnx-int8").encode(TEXTS)
    assert fp32.shape == torch_vectors.shape == int8.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    assert (fp32 * torch_vectors).sum(axis=1).min() > 0.9999
    assert (int8 * torch_vectors).sum(axis=1).min() > 0.98


def test_onnx_reader_gives_the_calibrated_scores() -> None:
    candidates = [("China and Russia", text) for text in TEXTS]
    expected = Reader(READER_DIR, backend="torch").score(QUESTION, candidates)
    got = Reader(READER_DIR, backend="onnx").score(QUESTION, candidates)
    for a, b in zip(expected, got, strict=True):
        assert abs(a.score - b.score) < 1e-3
        assert (a.start, a.end) == (b.start, b.end)
    best = max(range(len(got)), key=lambda i: got[i].score)
    assert best == 0 and "90%" in TEXTS[0][got[0].start : got[0].end]


def test_openvino_runs_the_fp32_export_with_fp32_family_vectors() -> None:
    """OpenVINO (bf16 matrix products on CPUs with bf16 units, else fp32) gives vectors an
    fp32 index can be queried with, and the reader's scores within 0.2 of ONNX Runtime's (the
    calibration's validation figures hold within tolerance: BENCHMARKS.md), same spans."""
    torch_vectors = Embedder(backend="torch").encode(TEXTS)
    openvino = Embedder(backend="openvino")
    assert openvino.backend == "openvino" and openvino.precision == "fp32"
    vectors = openvino.encode(TEXTS)
    assert (vectors * torch_vectors).sum(axis=1).min() > 0.9999
    candidates = [("China and Russia", text) for text in TEXTS]
    expected = Reader(READER_DIR, backend="onnx").score(QUESTION, candidates)
    got = Reader(READER_DIR, backend="openvino").score(QUESTION, candidates)
    for a, b in zip(expected, got, strict=True):
        assert abs(a.score - b.score) < 0.2
    assert (got[0].start, got[0].end) == (expected[0].start, expected[0].end)
    assert max(range(len(got)), key=lambda i: got[i].score) == 0
    export = exported(READER_DIR, "reader", "openvino")
    assert export.path("openvino") == export.path("onnx")  # no second export
    converted = export.folder / openvino_runtime.FOLDER
    assert (converted / "model.xml").is_file() and any((converted / "cache").iterdir())
    # fp16 weights: half the ONNX file's fp32 ones
    assert (converted / "model.bin").stat().st_size < export.path("onnx").stat().st_size * 0.55


def test_auto_is_openvino_where_it_loads_and_onnx_runtime_elsewhere(monkeypatch) -> None:
    assert resolve_backend("auto") == "openvino" and resolve_backend("onnx-int8") == "onnx-int8"
    assert Settings().encoder_backend == "auto"
    precision = openvino_runtime.inference_precision()
    assert precision in ("bf16", "f32") and precision in describe_backend("openvino")
    monkeypatch.setattr(openvino_runtime, "int8_dot_products", lambda: True)
    assert "RAG_ENCODER_BACKEND=openvino-int8 is faster" in describe_backend("openvino", "auto")
    monkeypatch.setattr(openvino_runtime, "int8_dot_products", lambda: False)
    assert "no int8 dot-product instructions" in describe_backend("openvino-int8")
    monkeypatch.setattr(openvino_runtime, "available", lambda: False)
    assert resolve_backend("auto") == "onnx" and Embedder().backend == "onnx"
    assert "openvino package does not load" in describe_backend("onnx", "auto")
    from rag.embeddings import packaged_model_dir

    model = exported(packaged_model_dir(), "embedding", "onnx")
    with pytest.raises(EncoderExportError, match=r"pip install openvino\) or set RAG_ENC"):
        OnnxEncoder(model, "openvino", 16)
    with pytest.raises(EncoderExportError, match=r"pip install openvino nncf\), or set RAG_"):
        OnnxEncoder(model, "openvino-int8", 16)


def test_openvino_int8_vectors_are_close_deterministic_and_a_family_of_their_own(
    tmp_path: Path, monkeypatch
) -> None:
    """The static int8 model (nncf, calibrated on the shipped texts) gives vectors 0.99 cosine
    to PyTorch's on average, tagged as their own precision; made once per cache, byte for byte the
    same on every machine (clients of one server embed alike), with no leftovers."""
    torch_vectors = Embedder(backend="torch").encode(TEXTS)
    int8 = Embedder(backend="openvino-int8")
    assert int8.precision == "int8-openvino" != Embedder(backend="openvino").precision
    vectors = int8.encode(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    agreement = (vectors * torch_vectors).sum(axis=1)
    assert agreement.min() > 0.98 and agreement.mean() > 0.99
    from rag.embeddings import packaged_model_dir

    made = exported(packaged_model_dir(), "embedding", "onnx").folder / "openvino-int8"
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    model = exported(packaged_model_dir(), "embedding", "onnx")
    again = OnnxEncoder(model, "openvino-int8", 256)
    weights = model.folder / "openvino-int8" / "model.bin"
    assert weights.read_bytes() == (made / "model.bin").read_bytes()
    arrays, _ = again.encode_batch(TEXTS)
    assert np.array_equal(again.run(arrays)[0], int8.onnx.run(arrays)[0])
    assert not [p for p in model.folder.iterdir() if p.name.startswith("openvino-int8.")]
    # int8 matrices, fp16 token tables: smaller than the fp16 conversion it is made from
    assert weights.stat().st_size < (made.parent / "openvino" / "model.bin").stat().st_size * 0.8


def test_missing_int8_calibration_texts_are_one_line(tmp_path: Path, monkeypatch) -> None:
    from rag import onnx_encoders
    from rag.embeddings import packaged_model_dir

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_encoders, "CALIBRATION_TEXTS", tmp_path / "nowhere")
    model = exported(packaged_model_dir(), "embedding", "onnx")
    with pytest.raises(EncoderExportError, match=r"calibration texts .* reinstall") as info:
        OnnxEncoder(model, "openvino-int8", 16)
    assert "\n" not in str(info.value)
    assert not (model.folder / "openvino-int8").exists()


def test_the_openvino_conversion_is_made_once_and_redone_when_incomplete(
    tmp_path: Path, monkeypatch
) -> None:
    from rag.embeddings import packaged_model_dir

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    model = exported(packaged_model_dir(), "embedding", "onnx")

    def vectors(encoder: OnnxEncoder) -> np.ndarray:
        return encoder.run(encoder.encode_batch(["The ferry leaves at 07:15."])[0])[0]

    first = vectors(OnnxEncoder(model, "openvino", 16))
    weights = model.folder / openvino_runtime.FOLDER / "model.bin"
    stamp = weights.stat().st_mtime_ns
    OnnxEncoder(model, "openvino", 16)
    assert weights.stat().st_mtime_ns == stamp  # converted once
    weights.unlink()  # an incomplete conversion (a disk cleaner, a copy) is made again
    again = vectors(OnnxEncoder(model, "openvino", 16))
    assert weights.is_file() and np.allclose(first, again)
    assert not [p for p in model.folder.iterdir() if p.name.startswith("openvino.")]  # no leftovers


def test_a_corrupt_export_is_one_line_for_either_runtime(tmp_path: Path, monkeypatch) -> None:
    from rag.embeddings import packaged_model_dir

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    model = exported(packaged_model_dir(), "embedding", "onnx")
    model.path("onnx").write_bytes(b"not a model")
    for backend, runtime in (("onnx", "ONNX Runtime"), ("openvino", "OpenVINO")):
        with pytest.raises(EncoderExportError, match=f"with {runtime} .*export it again") as info:
            OnnxEncoder(model, backend, 16)
        assert "\n" not in str(info.value)


def test_export_is_made_once_into_the_cache(tmp_path: Path, monkeypatch) -> None:
    from rag.embeddings import packaged_model_dir

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    assert Embedder(backend="onnx").needs_export and Reader(backend="onnx").needs_export
    assert not Embedder(backend="torch").needs_export
    model = exported(packaged_model_dir(), "embedding", "onnx")
    assert not Embedder(backend="onnx").needs_export and Embedder(backend="onnx-int8").needs_export
    assert model.folder.is_relative_to(tmp_path / "cache")
    stamp = model.path("onnx").stat().st_mtime_ns
    again = exported(packaged_model_dir(), "embedding", "onnx-int8")
    assert again.folder == model.folder and model.path("onnx").stat().st_mtime_ns == stamp
    assert again.path("onnx-int8").stat().st_size < model.path("onnx").stat().st_size / 3
    assert not Embedder(backend="onnx-int8").needs_export


def test_a_fresh_copy_of_the_same_weights_finds_its_export(tmp_path: Path, monkeypatch) -> None:
    """The export is keyed by the weights' content, not file times: a new checkout reuses it,
    changed files get a new one; each file is read once per (size, modification time)."""
    import shutil

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    copy = tmp_path / "reader"
    copy.mkdir()
    for path in READER_DIR.iterdir():
        if path.is_file():
            shutil.copyfile(path, copy / path.name)  # new modification times
    original = weights_fingerprint(READER_DIR)
    assert weights_fingerprint(copy) == original
    digests = tmp_path / "cache" / "onnx" / "digests.json"
    assert digests.is_file() and str((copy / "model.safetensors").resolve()) in digests.read_text(
        encoding="utf-8"
    )
    (copy / "config.json").write_text((copy / "config.json").read_text(encoding="utf-8") + "\n")
    assert weights_fingerprint(copy) != original


def test_a_new_export_removes_the_ones_it_supersedes(tmp_path: Path, monkeypatch) -> None:
    """Retrained weights in the same folder replace the old export; an export whose model
    folder is gone goes too; other models' exports stay."""
    import shutil

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    copies = []
    for name in ("reader", "other", "gone"):
        copy = tmp_path / name
        shutil.copytree(READER_DIR, copy)
        copies.append(copy)
    reader, other, gone = copies
    first = exported(reader, "reader", "onnx").folder
    kept = exported(other, "reader", "onnx").folder
    orphan = exported(gone, "reader", "onnx").folder
    assert first == kept == orphan  # the same weights share one export
    (other / "config.json").write_text((other / "config.json").read_text(encoding="utf-8") + "\n")
    kept = exported(other, "reader", "onnx").folder
    (gone / "config.json").write_text((gone / "config.json").read_text(encoding="utf-8") + "\n\n")
    orphan = exported(gone, "reader", "onnx").folder
    shutil.rmtree(gone)
    assert len({first, kept, orphan}) == 3 and orphan.is_dir()
    (reader / "config.json").write_text((reader / "config.json").read_text(encoding="utf-8") + " ")
    retrained = exported(reader, "reader", "onnx").folder
    assert retrained.is_dir() and kept.is_dir()  # another model folder's export stays
    # the same folder's earlier export is gone, and so is the one whose folder was deleted
    assert not first.exists() and not orphan.exists()
    digests = (tmp_path / "cache" / "onnx" / "digests.json").read_text(encoding="utf-8")
    assert str(gone) not in digests and str(other) in digests


def test_an_index_is_queried_only_in_its_own_precision(tmp_path: Path) -> None:
    """Explicit backends of another precision are refused with the setting that fits; ``auto``
    follows the index (a default that moved to int8 never locks out an fp32 index)."""
    from rag.answer import RAG

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The ferry leaves at 07:15 every weekday morning.\n")
    int8 = Settings(index_dir=tmp_path / "index", encoder_backend="onnx-int8", llm="extractive")
    assert ingest([docs], int8).ok
    assert not RAG(int8).ask("When does the ferry leave?").refused
    fp32 = int8.with_overrides(encoder_backend="onnx")
    with pytest.raises(EmbeddingMismatchError, match="RAG_ENCODER_BACKEND=onnx-int8"):
        RAG(fp32).ask("When does the ferry leave?")
    with pytest.raises(EmbeddingMismatchError, match="embedded in int8"):
        ingest([docs], fp32.with_overrides(encoder_backend="torch"))
    auto = fp32.with_overrides(encoder_backend="auto")
    assert RAG(auto).embedder.backend == "onnx-int8"
    assert "07:15" in RAG(auto).ask("When does the ferry leave?").answer
    openvino_int8 = Settings(
        index_dir=tmp_path / "ov-index", encoder_backend="openvino-int8", llm="extractive"
    )
    assert ingest([docs], openvino_int8).ok
    with pytest.raises(EmbeddingMismatchError, match="RAG_ENCODER_BACKEND=auto or openvino-int8"):
        RAG(openvino_int8.with_overrides(encoder_backend="openvino")).ask("When?")
    assert RAG(openvino_int8.with_overrides(encoder_backend="auto")).embedder.precision == (
        "int8-openvino"
    )


def test_auto_makes_a_new_index_in_what_auto_resolves_to(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The ferry leaves at 07:15 every weekday morning.\n")
    settings = Settings(index_dir=tmp_path / "index", llm="extractive")
    assert ingest([docs], settings).ok
    from rag.onnx_encoders import precision_of
    from rag.store import recorded_precision

    assert recorded_precision(settings) == precision_of(resolve_backend("auto"))
    assert recorded_precision(settings.with_overrides(collection="absent")) is None


def test_an_fp32_index_is_served_by_any_fp32_family_backend(tmp_path: Path) -> None:
    """torch, onnx and openvino vectors agree to 1e-5 cosine: an index embedded by one is
    queried and extended by the others (a machine without bf16 units, or without openvino,
    opens the index another machine built)."""
    from rag.answer import RAG

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The ferry leaves at 07:15 every weekday morning.\n")
    onnx = Settings(index_dir=tmp_path / "index", encoder_backend="onnx", llm="extractive")
    assert ingest([docs], onnx).ok
    (docs / "tram.txt").write_text("The tram depot closes at midnight on Sundays.\n")
    assert ingest([docs], onnx.with_overrides(encoder_backend="openvino")).ok
    for backend in ("openvino", "auto", "onnx"):
        bot = RAG(onnx.with_overrides(encoder_backend=backend))
        ferry = bot.ask("When does the ferry leave?")
        tram = bot.ask("When does the tram depot close?")
        assert "07:15" in ferry.answer and "midnight" in tram.answer, backend


def test_an_index_of_an_earlier_int8_export_is_refused_with_a_rebuild_line(tmp_path: Path) -> None:
    """Indexes embedded by the unfused int8 export of earlier versions ("int8") are 0.996 cosine
    from today's int8 vectors: no setting of this version matches them."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The ferry leaves at 07:15 every weekday morning.\n")
    settings = Settings(index_dir=tmp_path / "index", encoder_backend="onnx-int8", llm="extractive")
    Store(settings, Embedder().name, 384, "int8").collection()
    with pytest.raises(EmbeddingMismatchError, match=r"No encoder of this version .* rebuild it"):
        ingest([docs], settings)


def test_query_path_never_imports_torch(seed_index: Settings) -> None:
    exported(READER_DIR, "reader", "onnx")  # made by an earlier run; here it must exist
    code = (
        "import sys, threading\n"
        "from rag.answer import RAG\n"
        "from rag.retrieval import HybridSearcher\n"
        "threads = []\n"
        "bm25 = HybridSearcher.bm25\n"
        "def spy(self):\n"
        "    threads.append(threading.current_thread().name)\n"
        "    return bm25(self)\n"
        "HybridSearcher.bm25 = spy\n"
        'answer = RAG().ask("What share of Russia\'s microelectronics came from China?")\n'
        "assert '90%' in answer.answer, answer.answer\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') "
        "if m in sys.modules]\n"
        "print('heavy:', heavy, 'first keyword index load on:', threads[0])\n"
        "print('load_s:', answer.timings.load_s)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=rag_env(RAG_INDEX_DIR=str(seed_index.index_dir), RAG_LLM="extractive"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "heavy: []" in result.stdout
    # the store opened beside the encoders' loading, not after it (RAG.load)
    assert "first keyword index load on: rag-load" in result.stdout
    load_s = float(result.stdout.split("load_s:")[1])
    assert load_s > 0  # the first question reports its loading apart from retrieval
