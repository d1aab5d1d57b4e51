"""The Chroma store: embedded (PersistentClient on index_dir) or a server (HttpClient).

The store is the source of truth for what is indexed: every chunk carries its file's key, hash
and chunk count, so ingestion can tell complete, stale and half-written files apart by asking
the store alone (which also works against a shared Chroma server).
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np

from rag.chunking import Chunk
from rag.config import RagError, Settings, make_offline
from rag.embeddings import Embedder, get_embedder
from rag.onnx_encoders import INT8, OPENVINO_INT8, backend_for_precision

PAGE_SIZE = 5000
WRITE_BATCH = 4000


class StoreError(RagError):
    """A store problem the user can act on; the message says what to do."""


class StoreUnavailableError(StoreError):
    """The Chroma server cannot be reached (or the embedded store cannot be opened)."""


class EmbeddingMismatchError(StoreError):
    """The index was built with a different embedding model than the one configured."""


@dataclass
class IndexedFile:
    """What the store holds for one file (by its key, the absolute path)."""

    key: str
    source: str
    doc_hashes: set[str] = field(default_factory=set)
    n_chunks: int = -1
    chunk_ids: list[str] = field(default_factory=list)

    def is_complete(self, doc_hash: str) -> bool:
        """All chunks of exactly this version are present (no half-written or mixed file)."""
        return self.doc_hashes == {doc_hash} and len(self.chunk_ids) == self.n_chunks


_CLIENTS: dict[str, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _connection_error(error: BaseException) -> bool:
    import httpx

    if isinstance(error, (httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    text = str(error).lower()
    return any(
        marker in text
        for marker in ("could not connect", "connection refused", "connecterror", "timed out")
    )


def open_client(settings: Settings) -> Any:
    """A Chroma client for the settings; one per index path or server URL in this process."""
    make_offline()
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    key = settings.chroma_url or str(settings.index_dir.resolve())
    with _CLIENTS_LOCK:
        if key in _CLIENTS:
            return _CLIENTS[key]
        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
        try:
            if settings.chroma_url:
                url = urlparse(settings.chroma_url)
                client = chromadb.HttpClient(
                    host=url.hostname or "127.0.0.1",
                    port=url.port or (443 if url.scheme == "https" else 8000),
                    ssl=url.scheme == "https",
                    settings=chroma_settings,
                )
                client.heartbeat()
            else:
                settings.index_dir.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(
                    path=str(settings.index_dir), settings=chroma_settings
                )
        except Exception as error:
            if settings.chroma_url:
                raise StoreUnavailableError(
                    f"index unavailable: cannot reach the Chroma server at {settings.chroma_url} "
                    f"({type(error).__name__}). Start it (chroma run --path DIR --host 127.0.0.1 "
                    "--port 8000) or unset RAG_CHROMA_URL to use the local index."
                ) from None
            raise StoreUnavailableError(
                f"cannot open the index at {settings.index_dir}: {error}"
            ) from None
        _CLIENTS[key] = client
        return client


def forget_client(settings: Settings) -> None:
    """Drop the cached client (after a connection failure: the next call reconnects)."""
    key = settings.chroma_url or str(settings.index_dir.resolve())
    with _CLIENTS_LOCK:
        _CLIENTS.pop(key, None)


class Store:
    """One Chroma collection holding our chunks, with the operations ingestion and retrieval use."""

    def __init__(
        self,
        settings: Settings,
        embedding_model: str | None,
        embedding_dim: int | None,
        embedding_precision: str = "fp32",
    ):
        """``embedding_model``/``embedding_dim`` None: read-only use, no compatibility check.
        ``embedding_precision``: "fp32" (torch, onnx or openvino), ``INT8`` (onnx-int8) or
        ``OPENVINO_INT8`` (openvino-int8); an index is queried only in the precision it was
        embedded in (our collections without the field were embedded in fp32; another tool's
        get our labels when we first write to them)."""
        self.settings = settings
        self.embedding_model = embedding_model
        self.embedding_dim = embedding_dim
        self.embedding_precision = embedding_precision
        self._collection: Any = None
        self._space = "cosine"
        self._lock = threading.RLock()

    # Connection --------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self.settings.store_mode

    @property
    def location(self) -> str:
        return self.settings.chroma_url or str(self.settings.index_dir)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate connection failures into StoreUnavailableError and reconnect next time."""
        try:
            yield
        except StoreError:
            raise
        except Exception as error:
            if self.settings.chroma_url and _connection_error(error):
                self._collection = None
                forget_client(self.settings)
                raise StoreUnavailableError(
                    f"index unavailable: the Chroma server at {self.settings.chroma_url} is not "
                    f"answering ({type(error).__name__}). Try again once it is back."
                ) from None
            raise

    def collection(self, create: bool = True) -> Any:
        """The Chroma collection (checked against our embedding model), or None if absent."""
        with self._lock:
            if self._collection is not None:
                return self._collection
            client = open_client(self.settings)
            with self._guard():
                if create:
                    collection = client.get_or_create_collection(
                        self.settings.collection,
                        embedding_function=None,
                        configuration={"hnsw": {"space": "cosine"}},
                        metadata=self._new_metadata(),
                    )
                else:
                    try:
                        collection = client.get_collection(
                            self.settings.collection, embedding_function=None
                        )
                    except Exception as error:
                        if _connection_error(error):
                            raise
                        return None
            self._check_compatible(collection)
            self._collection = collection
            return collection

    def _new_metadata(self) -> dict[str, Any]:
        return {
            "embedding_model": self.embedding_model,
            "embedding_dim": self.embedding_dim,
            "embedding_precision": self.embedding_precision,
            "revision": uuid.uuid4().hex,
        }

    def _check_compatible(self, collection: Any) -> None:
        self._space = _distance_space(collection)
        if self.embedding_model is None:
            return
        metadata = collection.metadata or {}
        model = metadata.get("embedding_model")
        dim = metadata.get("embedding_dim")
        if dim is None:  # not made by us (or by an old version): look at a stored vector
            dim = self._stored_dimension(collection)
        if model is None and dim is None:
            return
        if (model is not None and model != self.embedding_model) or (
            dim is not None and int(dim) != self.embedding_dim
        ):
            built = f"embedding model {model!r}" if model else "another embedding model"
            keep = f"Either set RAG_EMBEDDING_MODEL={model} or rebuild" if model else "Rebuild it"
            raise EmbeddingMismatchError(
                f"the index '{self.settings.collection}' at {self.location} was built with "
                f"{built} ({dim} dimensions) but the configured model is "
                f"{self.embedding_model!r} ({self.embedding_dim} dimensions); vectors of two "
                f"models cannot be mixed. {keep}: `rag reset --yes` then `rag ingest PATH`."
            )
        precision = metadata.get("embedding_precision")
        if precision is None and model is None:
            return  # not made by us: it gets our labels, precision too, when we first write
        precision = precision or "fp32"  # our versions before the label embedded in fp32
        if precision != self.embedding_precision:
            backends = {
                "fp32": "onnx, openvino or torch",
                INT8: "onnx-int8",
                OPENVINO_INT8: "auto or openvino-int8",
            }
            if precision in backends:
                switch = f"Set RAG_ENCODER_BACKEND={backends[precision]}, or rebuild it"
            else:  # "int8": an earlier version's unfused int8 export
                switch = "No encoder of this version embeds in it: rebuild it"
            raise EmbeddingMismatchError(
                f"the index '{self.settings.collection}' at {self.location} was embedded in "
                f"{precision} but this process embeds in {self.embedding_precision}; the two "
                f"differ slightly and are not mixed. {switch}: `rag reset --yes` then "
                "`rag ingest PATH`."
            )

    def _stored_dimension(self, collection: Any) -> int | None:
        """Size of one stored vector, or None for an empty collection."""
        with self._guard():
            page = collection.get(limit=1, include=["embeddings"])
        embeddings = page.get("embeddings")
        if embeddings is None or len(embeddings) == 0:
            return None
        return len(embeddings[0])

    def _similarity(self, distance: float) -> float:
        """Cosine similarity from a Chroma distance (our vectors are L2-normalised)."""
        if self._space == "l2":  # squared euclidean: 2 - 2 cos
            return 1.0 - distance / 2.0
        return 1.0 - distance  # cosine and ip distances are 1 - cos

    # Reading -----------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The collection's metadata ({} when there is no collection yet)."""
        collection = self.collection(create=False)
        return dict(collection.metadata or {}) if collection is not None else {}

    def count(self) -> int:
        collection = self.collection(create=False)
        if collection is None:
            return 0
        with self._guard():
            return int(collection.count())

    def revision(self) -> str:
        """Changes whenever the collection's content changes (used to key derived caches)."""
        client = open_client(self.settings)
        with self._guard():
            try:
                collection = client.get_collection(
                    self.settings.collection, embedding_function=None
                )
            except Exception as error:
                if _connection_error(error):
                    raise
                return "absent"
        return str((collection.metadata or {}).get("revision", "none"))

    def iter_records(
        self,
        include: Sequence[str] = ("metadatas",),
        where: dict[str, Any] | None = None,
        ids: Sequence[str] | None = None,
    ) -> Iterator[tuple[list[str], dict[str, list[Any]]]]:
        """Pages of (ids, {field: values}) for every stored chunk (or those matching where, or
        those with the given ids: missing ones are left out)."""
        collection = self.collection(create=False)
        if collection is None:
            return
        if ids is not None:
            for begin in range(0, len(ids), PAGE_SIZE):
                with self._guard():
                    page = collection.get(
                        ids=list(ids[begin : begin + PAGE_SIZE]), include=list(include)
                    )
                if page["ids"]:
                    yield page["ids"], {name: page[name] for name in include}
            return
        offset = 0
        while True:
            with self._guard():
                page = collection.get(
                    include=list(include), where=where, limit=PAGE_SIZE, offset=offset
                )
            ids = page["ids"]
            if not ids:
                return
            yield ids, {name: page[name] for name in include}
            offset += len(ids)
            if len(ids) < PAGE_SIZE:
                return

    def ids(self) -> list[str]:
        """Every stored chunk id, in one request (ids alone are small: ~40 MB for a million;
        pages by offset would cost the store a scan past every earlier page)."""
        collection = self.collection(create=False)
        if collection is None:
            return []
        with self._guard():
            return list(collection.get(include=[])["ids"])

    def indexed_files(self) -> dict[str, IndexedFile]:
        """Every file the store holds chunks of, keyed by file key."""
        files: dict[str, IndexedFile] = {}
        for ids, fields in self.iter_records(("metadatas",)):
            for chunk_id, metadata in zip(ids, fields["metadatas"], strict=True):
                metadata = metadata or {}
                key = str(metadata.get("path", ""))
                entry = files.get(key)
                if entry is None:
                    entry = files[key] = IndexedFile(key=key, source=str(metadata.get("source")))
                entry.doc_hashes.add(str(metadata.get("doc_hash", "")))
                entry.n_chunks = int(metadata.get("n_chunks", -1))
                entry.chunk_ids.append(chunk_id)
        return files

    def query(
        self, vector: np.ndarray, n_results: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the nearest chunks, best first.

        Raw chromadb rather than ``langchain_chroma.Chroma`` (which ``as_langchain_vectorstore``
        offers over the same collection): the hybrid search asks for ids and distances only
        (``include=["distances"]``) over ``fetch_k`` candidates and loads text just for the
        few it keeps, while LangChain's class always fetches every candidate's text and
        metadata; and ingest needs upsert-by-id, revision stamps and the embedding-model check
        on the collection's metadata, which LangChain's class does not expose."""
        collection = self.collection(create=False)
        if collection is None:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        with self._guard():
            # No count() first: it scans the collection (15 ms of a 20 ms search at 100k
            # chunks) and Chroma returns fewer results by itself when it holds fewer.
            try:
                result = collection.query(
                    query_embeddings=query, n_results=n_results, where=where, include=["distances"]
                )
            except Exception as error:
                if _connection_error(error):
                    raise
                count = collection.count()  # a Chroma that refuses n_results above its size
                if count == 0:
                    return []
                if count >= n_results:
                    raise
                result = collection.query(
                    query_embeddings=query, n_results=count, where=where, include=["distances"]
                )
        ids = result["ids"][0]
        distances = result["distances"][0]
        pairs = zip(ids, distances, strict=True)
        return [(chunk_id, self._similarity(float(d))) for chunk_id, d in pairs]

    def get(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """{id: (text, metadata)} for the given ids (missing ids are left out)."""
        if not ids:
            return {}
        collection = self.collection(create=False)
        if collection is None:
            return {}
        with self._guard():
            page = collection.get(ids=list(ids), include=["documents", "metadatas"])
        return {
            chunk_id: (text or "", metadata or {})
            for chunk_id, text, metadata in zip(
                page["ids"], page["documents"], page["metadatas"], strict=True
            )
        }

    # Writing -----------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray, extra: list[dict]) -> None:
        """Write chunks with their embeddings; ``extra`` holds per-chunk file metadata."""
        collection = self.collection()
        for begin in range(0, len(chunks), WRITE_BATCH):
            part = chunks[begin : begin + WRITE_BATCH]
            metadatas = [
                chunk_metadata(chunk, more)
                for chunk, more in zip(part, extra[begin : begin + WRITE_BATCH], strict=True)
            ]
            with self._guard():
                collection.upsert(
                    ids=[chunk.id for chunk in part],
                    embeddings=embeddings[begin : begin + WRITE_BATCH],
                    documents=[chunk.text for chunk in part],
                    metadatas=metadatas,
                )

    def delete(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        collection = self.collection()
        for begin in range(0, len(ids), WRITE_BATCH):
            with self._guard():
                collection.delete(ids=list(ids[begin : begin + WRITE_BATCH]))

    def touch(self) -> None:
        """Record that the content changed (new revision), so derived caches rebuild."""
        collection = self.collection()
        metadata = dict(collection.metadata or {})
        metadata.update(
            embedding_model=self.embedding_model,
            embedding_dim=self.embedding_dim,
            embedding_precision=self.embedding_precision,  # what the check above accepted
            revision=uuid.uuid4().hex,
        )
        with self._guard():
            collection.modify(metadata=metadata)

    def reset(self) -> bool:
        """Drop the collection. True if there was one."""
        client = open_client(self.settings)
        with self._lock, self._guard():
            self._collection = None
            try:
                client.delete_collection(self.settings.collection)
            except Exception as error:
                if _connection_error(error):
                    raise
                return False
            return True


def _distance_space(collection: Any) -> str:
    """The collection's HNSW distance ('cosine' for ours; 'l2' is Chroma's default)."""
    try:
        configuration = collection.configuration or {}
        return str((configuration.get("hnsw") or {}).get("space") or "cosine")
    except Exception:
        return "cosine"


def chunk_metadata(chunk: Chunk, extra: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata for a chunk (Chroma rejects None values, so absent page is left out)."""
    metadata: dict[str, Any] = {
        "source": chunk.source,
        "title": chunk.title,
        "start": chunk.start,
        "end": chunk.end,
        "chunk_index": chunk.index,
        "content_hash": chunk.content_hash,
    }
    if chunk.page is not None:
        metadata["page"] = chunk.page
    if chunk.table_header:
        metadata["table_header"] = chunk.table_header
    if chunk.section:
        metadata["section"] = chunk.section
    if chunk.sections:  # Chroma metadata values are scalars: the list goes as JSON
        metadata["sections"] = json.dumps(chunk.sections, ensure_ascii=False)
    if chunk.code:
        metadata["code"] = json.dumps(chunk.code)
    metadata.update(extra)
    return metadata


def recorded_precision(settings: Settings) -> str | None:
    """The precision the existing index was embedded in, or None (no index, or it cannot be
    read now: the store reports that itself when it is used)."""
    try:
        collection = Store(settings, None, None).collection(create=False)
    except Exception:
        return None
    if collection is None:
        return None
    return str((collection.metadata or {}).get("embedding_precision", "fp32"))


def embedder_for(settings: Settings) -> Embedder:
    """The shared embedder for this index. With RAG_ENCODER_BACKEND=auto an existing index
    keeps the precision it was embedded in (one built with openvino-int8 or onnx-int8 goes on
    in int8): the default setting never locks anyone out of their index."""
    if settings.encoder_backend != "auto":
        return get_embedder(settings)
    precision = recorded_precision(settings)
    backend = backend_for_precision(precision) if precision else None
    return get_embedder(settings, backend)


def open_store(settings: Settings, embedder: Any) -> Store:
    """The store for these settings, checked against ``embedder``'s model and dimension."""
    return Store(
        settings, embedder.name, embedder.dimension, getattr(embedder, "precision", "fp32")
    )


def as_langchain_vectorstore(settings: Settings, embedder: Any) -> Any:
    """The same collection as a langchain-chroma ``Chroma`` vector store, for LangChain users."""
    from langchain_chroma import Chroma

    return Chroma(
        client=open_client(settings),
        collection_name=settings.collection,
        embedding_function=embedder,
    )
