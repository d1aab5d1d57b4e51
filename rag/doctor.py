"""``python -m rag.doctor`` / ``rag doctor``: check that this install works offline.

Each check runs the real thing (embed a sentence, open Chroma, generate tokens with the default
LLM). The LLM check runs in a child process: a llama.cpp build for the wrong CPU dies with
SIGILL, and that must become a message, not a crash.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

LLAMA_REBUILD_HINT = (
    'rebuild it for this CPU: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON '
    '-DGGML_F16C=ON" pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python '
    "llama-cpp-python"
)

_LLM_PROBE = """
from rag.config import load_settings
from rag.llm import load_chat_model
model = load_chat_model("local", load_settings(llm_max_tokens=16))
print(repr(model.invoke("Say hello.").content[:40]))
"""


def check_embeddings() -> str:
    from rag.config import load_settings
    from rag.onnx_encoders import describe_backend
    from rag.store import embedder_for, recorded_precision

    settings = load_settings()
    embedder = embedder_for(settings)  # with auto: the precision the index was built in
    vector = embedder.encode(["offline check"])
    runs = describe_backend(embedder.backend, settings.encoder_backend)
    index = recorded_precision(settings)
    kept = f"; the index holds {index} vectors" if index else ""
    return f"{embedder.name} ({runs}{kept}), {vector.shape[1]} dimensions"


def check_chroma() -> str:
    from rag.config import load_settings
    from rag.store import Store

    with tempfile.TemporaryDirectory() as folder:
        store = Store(load_settings(index_dir=Path(folder), collection="doctor"), "probe", 3)
        store.collection()
        return f"embedded store works (chromadb {_version('chromadb')})"


def check_reader() -> str:
    from rag.config import load_settings
    from rag.reader import READER_DIR, Reader, reader_backend_for

    reader = Reader(READER_DIR, backend=reader_backend_for(load_settings().encoder_backend))
    question = "When was the first web browser invented?"
    sentence = "The first web browser was invented in 1990 by Sir Tim Berners-Lee."
    score = reader.score(question, [("Web browser", sentence)])[0]
    calibration = reader.calibration
    if score.score < calibration.sentence_threshold:
        raise RuntimeError(f"the reader scores a plain answer {score.score:.2f}: {READER_DIR}")
    return (
        f"answers {sentence[score.start : score.end]!r} "
        f"(score {score.score:.1f}, sentence threshold {calibration.sentence_threshold:.2f}; "
        f"{reader.backend})"
    )


def check_llm() -> str:
    result = subprocess.run(
        [sys.executable, "-c", _LLM_PROBE], capture_output=True, text=True, timeout=300
    )
    if result.returncode < 0 or result.returncode in (132, 134, 139):
        raise RuntimeError(
            f"llama-cpp-python crashed (signal/exit {result.returncode}); " + LLAMA_REBUILD_HINT
        )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "failed")
    return f"SmolLM2-135M-Instruct answered {result.stdout.strip()}"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


CHECKS: list[tuple[str, Callable[[], str]]] = [
    ("embeddings", check_embeddings),
    ("chroma", check_chroma),
    ("reader", check_reader),
    ("llm", check_llm),
]


def run_checks() -> bool:
    """Run every check, print one line each; True when all pass."""
    ok = True
    for name, check in CHECKS:
        started = time.perf_counter()
        try:
            detail = check()
            print(f"ok    {name:<11} {detail} ({time.perf_counter() - started:.1f}s)")
        except Exception as error:
            ok = False
            print(f"FAIL  {name:<11} {error}")
    return ok


def main() -> None:
    sys.exit(0 if run_checks() else 1)


if __name__ == "__main__":
    main()
