"""OpenVINO as a second runtime for the exported fp32 encoders (rag.onnx_encoders).

OpenVINO reads the same ``model.onnx`` ONNX Runtime runs, and on a CPU with bfloat16 matrix
units (Intel AMX or AVX-512 BF16) it runs the matrix products in bf16 with fp32 accumulation by
default: on the 2-core Xeon of BENCHMARKS.md, embeddings 2.7x PyTorch fp32 (ONNX Runtime
int8: 1.8x) with vectors 0.99999 cosine to fp32 (int8: 0.995), and the reader's per-question
scoring 2.9x faster than ONNX Runtime fp32. Elsewhere it runs in fp32, a little faster than
ONNX Runtime (1.17x embedding, 1.07x reading, held to fp32 on that host). Either way its
vectors belong to the fp32 family: an index embedded by torch, onnx or openvino is queried by
any of them.

The ONNX file is converted once to OpenVINO's own format beside it with fp16 weights
(``openvino/model.xml``): half the memory (a process holding both encoders: 396 MB against
524 MB with the ONNX file's fp32 weights), no slower, and on bf16 hardware the weights are
rounded to bf16 anyway. Compiled models are cached there too (OpenVINO's ``CACHE_DIR``).

``quantized`` makes the embedding model's static int8 form (backend "openvino-int8", a
choice, not the default): nncf's post-training quantization of that fp16 conversion, its
activation ranges set on shipped calibration texts (``rag/models/encoder-calibration``), the
token tables left in fp16, written once to ``openvino-int8/`` beside the ONNX file. On CPUs
with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX) it embeds about 1.7x faster
than bf16 (3.5x PyTorch fp32) with vectors 0.998 cosine to fp32 (benchmarks/): a family of
its own.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "openvino"  # beside model.onnx: model.xml, model.bin and compiled-model caches
INT8_FOLDER = "openvino-int8"  # beside model.onnx: the static int8 model and its caches
INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in hardware
_CONVERT_LOCK = threading.Lock()


@functools.cache
def available() -> bool:
    """Whether the ``openvino`` package imports here."""
    try:
        import openvino  # noqa: F401
    except Exception:  # an ImportError, or a wheel that does not load on this platform
        return False
    return True


@functools.cache
def _core() -> Any:
    import openvino

    return openvino.Core()


def inference_precision() -> str:
    """The precision OpenVINO runs matrix products in on this CPU ("bf16" or "f32")."""
    try:
        hint = _core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    except Exception:
        return "f32"
    return "bf16" if "bfloat16" in str(hint) or "bf16" in str(hint) else "f32"


@functools.cache
def int8_dot_products() -> bool:
    """Whether this CPU has int8 dot-product instructions (Linux's CPU flags; elsewhere False),
    where a static int8 model beats bf16 or fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set(next((line for line in text.splitlines() if line.startswith("flags")), "").split())
    return any(flag in flags for flag in INT8_CPU_FLAGS)


def int8_available() -> bool:
    """Whether the static int8 model can be made here (openvino loads, nncf is installed)."""
    import importlib.util

    return available() and importlib.util.find_spec("nncf") is not None


def _write_once(onnx_path: Path, folder_name: str, make: Callable[[Path], None]) -> Path:
    """``folder_name/model.xml`` beside ``onnx_path``, made by ``make(xml)`` if absent (in a
    temporary folder then renamed: a crash leaves no half-written model)."""
    folder = onnx_path.parent / folder_name
    model = folder / "model.xml"

    def complete() -> bool:
        return model.is_file() and model.with_suffix(".bin").is_file()

    with _CONVERT_LOCK:
        if complete():
            return model
        work = Path(tempfile.mkdtemp(prefix=f"{folder_name}.", dir=onnx_path.parent))
        try:
            make(work / "model.xml")
            if not complete():  # else another process made it meanwhile: keep theirs
                if folder.exists():
                    shutil.rmtree(folder)
                work.replace(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return model


def converted(onnx_path: Path) -> Path:
    """``onnx_path`` in OpenVINO's format with fp16 weights, converted now if not done yet."""

    def convert(target: Path) -> None:
        import openvino

        source = _core().read_model(str(onnx_path))
        openvino.save_model(source, str(target), compress_to_fp16=True)

    return _write_once(onnx_path, FOLDER, convert)


def quantized(onnx_path: Path, samples: Callable[[], list[dict[str, np.ndarray]]]) -> Path:
    """``onnx_path`` quantized to static int8 by nncf (transformer preset: SmoothQuant, bias
    correction) with activation ranges from ``samples()`` (one input dict per text), made now
    if not done yet (about 20 s on 2 cores). Deterministic: the same inputs give the same
    bytes. nncf's log and progress bars are kept off the caller's terminal."""

    source = converted(onnx_path)  # fp16 tables stay fp16 (bf16 when compiled), as there

    def quantize(target: Path) -> None:
        import openvino

        inputs = samples()
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            import nncf

            nncf.set_log_level(logging.ERROR)
            model = nncf.quantize(
                _core().read_model(str(source)),
                nncf.Dataset(inputs),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(inputs),
                # the token tables stay as they are: an int8 table is folded back into fp32
                # when compiled (+40 MB of memory); fp16 ones compile as converted's do
                ignored_scope=nncf.IgnoredScope(types=["Gather"]),
            )
        openvino.save_model(model, str(target), compress_to_fp16=False)

    return _write_once(onnx_path, INT8_FOLDER, quantize)


class CompiledEncoder:
    """An encoder in OpenVINO's format (``converted`` or ``quantized``) compiled for the CPU;
    ``run`` is thread-safe (one inference request per thread)."""

    def __init__(self, model: Path, threads: int):
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "CACHE_DIR": str(model.parent / "cache"),
        }
        self.model = _core().compile_model(str(model), "CPU", config)
        self._local = threading.local()

    def run(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.model.create_infer_request()
        results = request.infer(arrays)  # copies out: the next call reuses the buffers
        return [np.asarray(results[output]) for output in self.model.outputs]
