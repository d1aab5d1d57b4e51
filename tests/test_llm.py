"""LLM backends: spec parsing, and each remote backend wired end to end against a local
stand-in server speaking its real HTTP protocol (OpenAI-compatible SSE, Ollama NDJSON)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rag.answer import RAG
from rag.config import Settings, load_settings
from rag.llm import (
    LLMConfigError,
    LLMUnavailableError,
    load_chat_model,
    max_tokens_for,
    parse_spec,
    smollm2_path,
)

REPLY = "About 90% of Russia's microelectronics came from China in 2023 [1]. Also pigs fly [2]."
QUESTION = "What share of Russia's microelectronics came from China in 2023?"


class _Recorder(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length", 0))
        data = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append({"path": self.path, "body": data})  # type: ignore[attr-defined]
        return data


class OpenAIHandler(_Recorder):
    def do_POST(self) -> None:
        body = self._body()
        words = REPLY.split(" ")
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i, word in enumerate(words):
                delta = {"content": word + (" " if i < len(words) - 1 else "")}
                chunk = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        payload = {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class OllamaHandler(_Recorder):
    def do_POST(self) -> None:
        body = self._body()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for word in REPLY.split(" "):
            line = {
                "model": body.get("model"),
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": word + " "},
                "done": False,
            }
            self.wfile.write((json.dumps(line) + "\n").encode())
        final = {
            "model": body.get("model"),
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
        }
        self.wfile.write((json.dumps(final) + "\n").encode())


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def openai_server() -> Iterator[ThreadingHTTPServer]:
    yield from _serve(OpenAIHandler)


@pytest.fixture
def ollama_server() -> Iterator[ThreadingHTTPServer]:
    yield from _serve(OllamaHandler)


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _check_verified(answer: Any) -> None:
    assert not answer.refused
    assert "90%" in answer.answer
    assert "pigs" not in answer.answer  # unsupported sentence dropped
    assert answer.citations and "90%" in answer.citations[0].quote


def _prompt_text(request: dict[str, Any]) -> str:
    return json.dumps(request["body"].get("messages", []))


def test_openai_compatible_backend_end_to_end(
    seed_index: Settings, openai_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", _url(openai_server) + "/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    bot = RAG(seed_index.with_overrides(llm="openai:test-model"))
    events = list(bot.stream(QUESTION, drafts=True))
    assert sum(event.kind == "token" for event in events) > 3
    answer = events[-1].answer
    assert "".join(e.text for e in events if e.kind == "sentence") == answer.answer
    _check_verified(answer)
    assert answer.llm == "openai:test-model"
    request = openai_server.requests[-1]  # type: ignore[attr-defined]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "test-model"
    assert "[1]" in _prompt_text(request) and "microelectronics" in _prompt_text(request)


def test_ollama_backend_end_to_end(
    seed_index: Settings, ollama_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", _url(ollama_server))
    bot = RAG(seed_index.with_overrides(llm="ollama:llama-test"))
    answer = bot.ask(QUESTION)
    _check_verified(answer)
    assert answer.llm == "ollama:llama-test"
    request = ollama_server.requests[-1]  # type: ignore[attr-defined]
    assert request["path"] == "/api/chat"
    assert request["body"]["model"] == "llama-test"
    assert "microelectronics" in _prompt_text(request)


def test_capable_backend_condenses_follow_ups_with_the_llm(
    seed_index: Settings, openai_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", _url(openai_server) + "/v1")
    bot = RAG(seed_index.with_overrides(llm="openai:test-model"))
    answer = bot.ask("And what about it?", history=[(QUESTION, "About 90% [1].")])
    # The stand-in server answers every call with REPLY; its first line became the standalone
    # question, proving the rewrite went through the LLM.
    assert answer.standalone_question.startswith("About 90%")
    condense_request = openai_server.requests[0]  # type: ignore[attr-defined]
    assert "standalone" in _prompt_text(condense_request)


def test_unreachable_backend_gives_clear_error(
    seed_index: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:9")
    bot = RAG(seed_index.with_overrides(llm="ollama:nothing-here"))
    with pytest.raises(LLMUnavailableError, match=r"ollama:nothing-here.*127\.0\.0\.1:9"):
        bot.ask(QUESTION)


def test_parse_spec() -> None:
    assert parse_spec("local").kind == "local"
    assert Path(parse_spec("local").target) == smollm2_path()
    assert parse_spec("extractive").is_extractive
    assert parse_spec("ollama:llama3.2").target == "llama3.2"
    assert parse_spec("openai:gpt-4o-mini").label == "openai:gpt-4o-mini"
    with pytest.raises(LLMConfigError, match="unknown RAG_LLM"):
        parse_spec("claude")
    with pytest.raises(LLMConfigError, match="GGUF file not found"):
        parse_spec("gguf:/no/such/model.gguf")
    with pytest.raises(LLMConfigError, match="name the model"):
        parse_spec("ollama:")
    spec = parse_spec("anthropic:claude-sonnet-4-5")
    assert (spec.kind, spec.provider, spec.target) == ("provider", "anthropic", "claude-sonnet-4-5")
    assert spec.capabilities.rewrites_follow_ups and not spec.capabilities.strict
    assert parse_spec("local").capabilities.strict


def test_provider_models_come_from_init_chat_model(settings: Settings) -> None:
    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI

    assert isinstance(load_chat_model("ollama:llama3.2", settings), ChatOllama)
    model = load_chat_model("openai:gpt-4o-mini", settings)
    assert isinstance(model, ChatOpenAI) and model.max_tokens == 256
    # A provider LangChain knows whose partner package is missing: one line naming it.
    with pytest.raises(LLMConfigError, match=r"pip install langchain-anthropic$"):
        load_chat_model("anthropic:claude-sonnet-4-5", settings)
    with pytest.raises(LLMConfigError, match="unknown provider 'nosuch'"):
        load_chat_model("nosuch:model", settings)


def test_gguf_spec_uses_the_given_file(tmp_path: Path, settings: Settings) -> None:
    copy = tmp_path / "my-model.gguf"
    copy.symlink_to(smollm2_path())
    spec = parse_spec(f"gguf:{copy}")
    assert spec.kind == "gguf" and spec.target == str(copy.resolve())
    model = load_chat_model(spec, settings)
    assert model is not None and getattr(model, "model_path", None) == str(copy.resolve())
    assert load_chat_model(spec, settings) is model  # loaded once per process


def test_extractive_has_no_model(settings: Settings) -> None:
    assert load_chat_model("extractive", settings) is None


def test_draft_length_defaults_per_backend() -> None:
    """The tiny local model gets short drafts (time to answer); others 256; the setting wins."""
    settings = load_settings()
    assert max_tokens_for(parse_spec("local"), settings) == 128
    assert max_tokens_for(parse_spec("ollama:llama3.2"), settings) == 256
    assert max_tokens_for(parse_spec("local"), settings.with_overrides(llm_max_tokens=64)) == 64
