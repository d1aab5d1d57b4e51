"""OpenVINO as a second runtime for the exported fp32 encoders (rag.onnx_encoders).

OpenVINO reads the same ``model.onnx`` ONNX Runtime runs, and on a CPU with bfloat16 matrix
units (Intel AMX or AVX-512 BF16) it runs the matrix products in bf16 with fp32 accumulation by
default: on the 2-core Xeon these figures come from, embeddings 2.9x PyTorch fp32 (ONNX Runtime
int8: 2.0x) with vectors 0.99999 cosine to fp32 (int8: 0.995), and the reader's per-question
scoring 2.1x faster than ONNX Runtime fp32 (benchmarks/, BENCHMARKS.md). Elsewhere it runs in
fp32, a little faster than ONNX Runtime. Either way its vectors belong to the fp32 family: an
index embedded by torch, onnx or openvino is queried by any of them.

Compiled models are cached next to the export (OpenVINO's ``CACHE_DIR``), so a later process
loads one in about 0.1 s instead of compiling it again.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FOLDER = "openvino-cache"


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


class CompiledEncoder:
    """One ONNX graph compiled for the CPU; ``run`` is thread-safe (one request per thread)."""

    def __init__(self, path: Path, threads: int):
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "CACHE_DIR": str(path.parent / CACHE_FOLDER),
        }
        self.model = _core().compile_model(str(path), "CPU", config)
        self._local = threading.local()

    def run(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.model.create_infer_request()
        results = request.infer(arrays)  # copies out: the next call reuses the buffers
        return [np.asarray(results[output]) for output in self.model.outputs]
