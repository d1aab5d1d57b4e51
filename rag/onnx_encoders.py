"""ONNX encoders: the packaged MiniLM embedding model and the reader, exported once, run by
ONNX Runtime or by OpenVINO (backend "openvino", the default where it loads, and the
embedding model's static int8 "openvino-int8": rag.openvino_runtime).

The weights come from the installed packages (never a download): on first use each model is
exported from its local folder with ``torch.onnx.export`` into a cache folder
(``RAG_CACHE_DIR``, default ``~/.cache/rag-offline``), and for ``onnx-int8`` quantized with
ONNX Runtime's dynamic per-channel int8 quantization. The exported graph is fused with ONNX
Runtime's BERT optimizer (one Attention, EmbedLayerNormalization and SkipLayerNormalization op
per block instead of dozens of small ones): the same outputs to float rounding, 1.4x faster in
fp32 and 1.7x in int8 on these 2 cores (benchmarks/). After that a process runs the model with
``onnxruntime`` (or ``openvino``: rag.openvino_runtime) and the ``tokenizers`` library alone:
the query path never imports torch, transformers or sentence-transformers, which is most of a
cold start.

Why not sentence-transformers' own ``backend="onnx"``: it needs ``optimum`` (a large extra
dependency) and still imports torch and sentence-transformers on every start.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.config import RagError

Backend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
OPENVINO_BACKENDS = ("openvino", "openvino-int8")
CALIBRATION_TEXTS = Path(__file__).resolve().parent / "models" / "encoder-calibration"
EXPORT_FORMAT = "2"  # 2: fused graph (int8 vectors differ from format 1 ones)
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class EncoderExportError(RagError):
    """A model could not be exported to ONNX or loaded with ONNX Runtime."""


def cache_root() -> Path:
    return Path(os.environ.get("RAG_CACHE_DIR") or "~/.cache/rag-offline").expanduser()


INT8 = "int8-fused"  # earlier exports' unfused int8 ("int8") gives vectors 0.996 cosine apart
OPENVINO_INT8 = "int8-openvino"  # OpenVINO's static int8 (nncf): 0.997 cosine to fp32


def precision_of(backend: str) -> str:
    """The numeric precision a backend's vectors have ("fp32" for torch, onnx and openvino
    alike: their vectors agree to 1e-5 cosine; ``INT8`` and ``OPENVINO_INT8`` for the two
    quantized ones, each a family of its own)."""
    return {"onnx-int8": INT8, "openvino-int8": OPENVINO_INT8}.get(backend, "fp32")


def backend_for_precision(precision: str) -> str | None:
    """The backend that embeds in ``precision`` here (fp32: what ``auto`` runs), or None for a
    precision no backend of this version makes."""
    if precision == "fp32":
        return resolve_backend("auto")
    return {INT8: "onnx-int8", OPENVINO_INT8: "openvino-int8"}.get(precision)


def resolve_backend(backend: str) -> str:
    """``auto``: OpenVINO where the ``openvino`` package loads (bf16 or fp32 products, fp32
    vectors), else ONNX Runtime fp32; any other name is returned as it is. (OpenVINO's static
    int8 is faster still on CPUs with int8 dot products, but stays a choice: it answered 2 of 73
    paraphrased README validation questions fewer: rag/models/encoder-calibration/README.md.)"""
    if backend != "auto":
        return backend
    from rag import openvino_runtime

    return "openvino" if openvino_runtime.available() else "onnx"


def weights_fingerprint(folder: Path) -> str:
    """Identifies the weights by content: names and SHA-256 digests of the model's files. A
    copy or a fresh checkout of the same weights (new modification times) finds its export;
    changed weights get a new one. Digests are kept per (path, size, modification time) in the
    cache, so a file is read once, not on every start."""
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    known = _known_digests()
    learned = False
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".bin", ".json", ".txt"):
            stat = path.stat()
            key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
            if key not in known:
                with path.open("rb") as handle:
                    known[key] = hashlib.file_digest(handle, "sha256").hexdigest()
                learned = True
            digest.update(f"{path.relative_to(folder)}:{known[key]}".encode())
    if learned:
        _remember_digests(known)
    return digest.hexdigest()[:16]


def _digests_path() -> Path:
    return cache_root() / "onnx" / "digests.json"


def _known_digests() -> dict[str, str]:
    try:
        known = json.loads(_digests_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _remember_digests(known: dict[str, str]) -> None:
    """Best effort, atomically (a process that loses a race recomputes a digest, no more)."""
    path = _digests_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(known), encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass


@dataclass(frozen=True)
class ExportedModel:
    folder: Path  # model.onnx, model-int8.onnx, tokenizer.json, openvino*/

    def path(self, backend: str) -> Path:
        """The ONNX file a backend runs (openvino-int8: the one it is quantized from)."""
        return self.folder / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")


_EXPORT_LOCK = threading.Lock()


def _cached_export(source: Path, kind: str) -> ExportedModel:
    return ExportedModel(cache_root() / "onnx" / f"{kind}-{weights_fingerprint(source)}")


def is_exported(source: Path, kind: Literal["embedding", "reader"], backend: str) -> bool:
    """Whether the cache holds ``source``'s export for ``backend`` (loading it exports
    nothing, so imports neither torch nor transformers)."""
    model = _cached_export(source, kind)
    return model.path(backend).is_file() and (model.folder / "tokenizer.json").is_file()


def exported(source: Path, kind: Literal["embedding", "reader"], backend: str) -> ExportedModel:
    """The ONNX export of ``source`` for ``backend``, made now if the cache lacks it."""
    model = _cached_export(source, kind)
    folder = model.folder
    with _EXPORT_LOCK:
        if not model.path("onnx").is_file() or not (folder / "tokenizer.json").is_file():
            _export(source, kind, folder)
            _prune_superseded(folder)
        if backend == "onnx-int8" and not model.path(backend).is_file():
            _quantize(model.path("onnx"), model.path(backend))
    return model


def _export(source: Path, kind: str, folder: Path) -> None:
    """torch.onnx.export of the encoder (embedding: last hidden state; reader: start and end
    logits) with eager attention (the pattern ONNX Runtime's optimizer fuses), fused, and
    written atomically next to the tokenizer."""
    try:
        import torch
        from transformers import AutoModel, AutoModelForQuestionAnswering, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        if kind == "reader":
            model = AutoModelForQuestionAnswering.from_pretrained(
                source,
                local_files_only=True,
                torch_dtype=torch.float32,
                attn_implementation="eager",
            )
            outputs = ["start_logits", "end_logits"]
        else:
            model = AutoModel.from_pretrained(
                source, local_files_only=True, attn_implementation="eager"
            )
            outputs = ["last_hidden_state"]
        model = model.float().eval()

        class Encoder(torch.nn.Module):
            def __init__(self, inner: Any):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                result = self.inner(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                )
                if kind == "reader":
                    return result.start_logits, result.end_logits
                return result.last_hidden_state

        sample = tokenizer(["a question"], ["a short passage"], return_tensors="pt")
        axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, *outputs)}
        folder.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes on shape checks: BERT has none
                torch.onnx.export(
                    Encoder(model),
                    tuple(sample[name] for name in INPUTS),
                    str(work / "traced.onnx"),
                    input_names=list(INPUTS),
                    output_names=outputs,
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
            _fuse(work / "traced.onnx", work / "model.onnx", model.config)
            (work / "traced.onnx").unlink()
            tokenizer.backend_tokenizer.save(str(work / "tokenizer.json"))
            (work / "export.json").write_text(
                json.dumps(
                    {"source": str(source.resolve()), "kind": kind, "format": EXPORT_FORMAT}
                ),
                encoding="utf-8",
            )
            if folder.exists():
                shutil.rmtree(folder)
            work.replace(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except RagError:
        raise
    except Exception as error:
        raise EncoderExportError(
            f"cannot export {source} to ONNX ({type(error).__name__}: {str(error)[:200]}); "
            "set RAG_ENCODER_BACKEND=torch to run it with PyTorch"
        ) from None


def _fuse(traced: Path, fused: Path, config: Any) -> None:
    """ONNX Runtime's BERT graph fusion. Every block must fuse: a partly fused graph would run,
    but its int8 vectors would not be the ones the precision tag promises."""
    from onnxruntime.transformers.optimizer import optimize_model

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        model = optimize_model(
            str(traced),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
        )
    finally:
        root.setLevel(level)
    fused_blocks = model.get_fused_operator_statistics().get("Attention", 0)
    if fused_blocks != config.num_hidden_layers:
        raise EncoderExportError(
            f"ONNX Runtime fused {fused_blocks} of {config.num_hidden_layers} attention blocks "
            "(an onnxruntime version this export does not know?); set RAG_ENCODER_BACKEND=torch "
            "to run the model with PyTorch"
        )
    model.save_model_to_file(str(fused))


def _prune_superseded(current: Path) -> None:
    """Remove the exports that ``current`` replaces: earlier weights of the same model folder
    (retrained or updated), and exports whose model folder is gone. Best effort; a process
    still running an old export keeps its loaded session."""
    try:
        source = json.loads((current / "export.json").read_text(encoding="utf-8"))["source"]
    except (OSError, ValueError, KeyError):
        return
    for folder in current.parent.glob(f"{current.name.split('-')[0]}-*"):
        if folder == current or "." in folder.name or not folder.is_dir():
            continue  # "." marks an export still being written
        try:
            other = Path(json.loads((folder / "export.json").read_text(encoding="utf-8"))["source"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if str(other) == source or (other.is_absolute() and not other.is_dir()):
            shutil.rmtree(folder, ignore_errors=True)
    known = _known_digests()
    kept = {key: value for key, value in known.items() if Path(key.split("|")[0]).exists()}
    if len(kept) < len(known):
        _remember_digests(kept)


def _quantize(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantization, per output channel (per-tensor loses too much: mean cosine
    to fp32 0.95 against 0.99 per channel on MiniLM)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    temporary = int8.with_suffix(".tmp.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process applies to vision models
    try:
        quantize_dynamic(
            str(fp32),
            str(temporary),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": 1},  # FLOAT: fused ops' outputs carry no type
        )
    finally:
        root.setLevel(level)
    temporary.replace(int8)


def import_runtime(backends: tuple[str, ...] = ("onnx",)) -> None:
    """Import what ``OnnxEncoder``s of these backends need (their runtime, tokenizers) now,
    on this thread."""
    import tokenizers  # noqa: F401

    if any(backend in OPENVINO_BACKENDS for backend in backends):
        from rag import openvino_runtime

        if openvino_runtime.available():
            openvino_runtime.inference_precision()  # creates the shared Core
    if any(backend not in OPENVINO_BACKENDS for backend in backends):
        import onnxruntime  # noqa: F401


def describe_backend(backend: str, configured: str = "auto") -> str:
    """What runs the encoders, for ``rag doctor``: the runtime, its precision on this CPU, and
    why ``auto`` fell back where it did."""
    if backend in OPENVINO_BACKENDS:
        from rag import openvino_runtime

        if not openvino_runtime.available():
            return f"{backend}: the openvino package does not load here (pip install openvino)"
        if backend == "openvino-int8":
            if not openvino_runtime.int8_dot_products():
                return "openvino-int8 (this CPU has no int8 dot-product instructions: slow)"
            return "openvino-int8, static int8 on this CPU's int8 dot-product instructions"
        products = (
            "bf16 matrix products on this CPU's bf16 units"
            if openvino_runtime.inference_precision() == "bf16"
            else "fp32 (this CPU has no bf16 matrix units)"
        )
        why = ""
        if configured == "auto" and openvino_runtime.int8_dot_products():
            why = "; this CPU has int8 dot products: RAG_ENCODER_BACKEND=openvino-int8 is faster"
        return f"openvino, {products}{why}"
    if backend == "onnx" and configured == "auto":
        return "onnx, ONNX Runtime fp32 (the openvino package does not load here)"
    return {"onnx": "onnx, ONNX Runtime fp32", "onnx-int8": "onnx-int8, ONNX Runtime int8"}.get(
        backend, backend
    )


class OnnxEncoder:
    """An exported BERT-style encoder run with ONNX Runtime, or with OpenVINO for the
    "openvino" backend (thread-safe either way)."""

    def __init__(
        self, model: ExportedModel, backend: str, max_length: int, threads: int | None = None
    ):
        """``max_length``: inputs (texts, or text pairs, longest first) are truncated to it."""
        from tokenizers import Tokenizer

        threads = threads or max(1, os.cpu_count() or 1)
        runtime = "OpenVINO" if backend in OPENVINO_BACKENDS else "ONNX Runtime"
        try:
            self.tokenizer = Tokenizer.from_file(str(model.folder / "tokenizer.json"))
            self.tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
            self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            if backend == "openvino-int8":
                self.run = _openvino_int8_runner(model, self, threads)
            elif backend == "openvino":
                self.run = _openvino_runner(model.path(backend), threads)
            else:
                self.run = _onnxruntime_runner(model.path(backend), threads)
        except RagError:
            raise
        except Exception as error:
            raise EncoderExportError(
                f"cannot load {model.path(backend)} with {runtime} ({type(error).__name__}); "
                f"delete {model.folder} to export it again"
            ) from None

    def encode_batch(self, texts: list[Any]) -> tuple[dict[str, np.ndarray], list]:
        """Token arrays (padded to the longest) for texts or (text, pair) tuples."""
        encodings = self.tokenizer.encode_batch(texts)
        arrays = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return arrays, encodings


Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def _onnxruntime_runner(path: Path, threads: int) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return functools.partial(session.run, None)


def _openvino_runner(path: Path, threads: int) -> Runner:
    from rag import openvino_runtime

    if not openvino_runtime.available():
        raise EncoderExportError(
            "RAG_ENCODER_BACKEND=openvino but the openvino package does not load here; "
            "install it (pip install openvino) or set RAG_ENCODER_BACKEND=onnx"
        )
    return openvino_runtime.CompiledEncoder(openvino_runtime.converted(path), threads).run


def calibration_texts() -> list[str]:
    """The shipped texts the static int8 model's activation ranges are set on (one per line;
    rag.train.encoder_calibration writes them)."""
    import gzip

    path = CALIBRATION_TEXTS / "paragraphs.txt.gz"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            return [line.strip() for line in lines if line.strip()]
    except (OSError, EOFError) as error:
        raise EncoderExportError(
            f"cannot read the int8 calibration texts {path} ({type(error).__name__}); "
            "reinstall, or run `python -m rag.train.encoder_calibration`"
        ) from None


def _openvino_int8_runner(model: ExportedModel, encoder: OnnxEncoder, threads: int) -> Runner:
    from rag import openvino_runtime

    if not openvino_runtime.int8_available():
        raise EncoderExportError(
            "RAG_ENCODER_BACKEND=openvino-int8 needs the openvino and nncf packages "
            "(pip install openvino nncf), or set RAG_ENCODER_BACKEND=openvino"
        )

    def samples() -> list[dict[str, np.ndarray]]:
        return [encoder.encode_batch([text])[0] for text in calibration_texts()]

    compiled = openvino_runtime.quantized(model.path("onnx"), samples)
    return openvino_runtime.CompiledEncoder(compiled, threads).run
