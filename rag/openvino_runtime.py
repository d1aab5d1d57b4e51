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
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

FOLDER = "openvino"  # beside model.onnx: model.xml, model.bin and compiled-model caches
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


def converted(onnx_path: Path) -> Path:
    """``onnx_path`` in OpenVINO's format with fp16 weights, converted now if not done yet
    (written to a temporary folder and renamed: a crash leaves no half-written model)."""
    folder = onnx_path.parent / FOLDER
    model = folder / "model.xml"

    def complete() -> bool:
        return model.is_file() and model.with_suffix(".bin").is_file()

    with _CONVERT_LOCK:
        if complete():
            return model
        import openvino

        work = Path(tempfile.mkdtemp(prefix=f"{FOLDER}.", dir=onnx_path.parent))
        try:
            source = _core().read_model(str(onnx_path))
            openvino.save_model(source, str(work / "model.xml"), compress_to_fp16=True)
            if not complete():  # else another process converted it meanwhile: keep theirs
                if folder.exists():
                    shutil.rmtree(folder)
                work.replace(folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return model


class CompiledEncoder:
    """An exported ONNX encoder compiled for the CPU (from its fp16 OpenVINO conversion);
    ``run`` is thread-safe (one inference request per thread)."""

    def __init__(self, onnx_path: Path, threads: int):
        model = converted(onnx_path)
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
