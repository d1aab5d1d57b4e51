"""Configuration: defaults < rag.toml < environment < CLI flags; invalid values are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import OFFLINE_ENVIRONMENT, ConfigError, Settings, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.index_dir == Path("index")
    assert settings.collection == "documents"
    assert settings.chroma_url is None and settings.store_mode == "embedded"
    assert settings.embedding_model == "packaged"
    assert settings.embedding_batch_size == 4
    assert (settings.chunk_size, settings.chunk_overlap) == (1000, 150)
    assert settings.llm == "extractive"
    assert settings.host == "127.0.0.1"


def test_precedence_defaults_toml_env_flags(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "rag.toml"
    toml.write_text(
        'collection = "from-toml"\nchunk_size = 800\nchunk_overlap = 100\n'
        'index_dir = "toml-index"\nk = 7\n'
    )
    monkeypatch.setenv("RAG_CONFIG", str(toml))
    settings = load_settings()
    assert (settings.collection, settings.chunk_size, settings.k) == ("from-toml", 800, 7)
    assert settings.index_dir == Path("toml-index")
    assert settings.fetch_k == 60  # not in the file: default
    monkeypatch.setenv("RAG_COLLECTION", "from-env")
    monkeypatch.setenv("RAG_CHUNK_SIZE", "600")
    settings = load_settings()
    assert (settings.collection, settings.chunk_size, settings.k) == ("from-env", 600, 7)
    settings = load_settings(collection="from-flag", chunk_size=None, index_dir=tmp_path / "x")
    assert settings.collection == "from-flag"
    assert settings.chunk_size == 600  # None means "flag not given"
    assert settings.index_dir == tmp_path / "x"


def test_rag_toml_in_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("RAG_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert load_settings().collection == "documents"
    (tmp_path / "rag.toml").write_text('collection = "cwd-toml"\n')
    assert load_settings().collection == "cwd-toml"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"chunk_size": 500, "chunk_overlap": 500}, "chunk_overlap"),
        ({"chunk_size": 10}, "chunk_size"),
        ({"collection": "a"}, "collection"),
        ({"collection": "bad name!"}, "collection"),
        ({"chroma_url": "localhost:8000"}, "RAG_CHROMA_URL"),
        ({"chroma_url": "ftp://host"}, "RAG_CHROMA_URL"),
        ({"auth": "nopassword"}, "user:password"),
        ({"port": 70000}, "port"),
        ({"embedding_batch_size": 0}, "embedding_batch_size"),
    ],
)
def test_invalid_values_are_one_clear_line(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert needle in message and "\n" not in message
    assert message.startswith("invalid configuration")


def test_invalid_env_value(monkeypatch) -> None:
    monkeypatch.setenv("RAG_K", "many")
    with pytest.raises(ConfigError, match="k: "):
        load_settings()


def test_broken_toml_file_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    toml = tmp_path / "broken.toml"
    toml.write_text("chunk_size = \n")
    monkeypatch.setenv("RAG_CONFIG", str(toml))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(toml) in str(caught.value)


def test_chroma_url_normalised_and_blank_means_embedded(monkeypatch) -> None:
    assert load_settings(chroma_url="http://127.0.0.1:8000/").chroma_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("RAG_CHROMA_URL", "  ")
    assert load_settings().store_mode == "embedded"
    monkeypatch.setenv("RAG_CHROMA_URL", "https://chroma.example:443")
    assert load_settings().store_mode == "server"


def test_derived_paths(tmp_path: Path) -> None:
    settings = load_settings(index_dir=tmp_path / "idx")
    assert settings.upload_dir == tmp_path / "data" / "uploads"
    assert settings.state_dir == tmp_path / "idx" / ".rag"
    assert load_settings(data_dir=tmp_path / "d").upload_dir == tmp_path / "d" / "uploads"


def test_with_overrides_revalidates() -> None:
    settings = load_settings()
    assert settings.with_overrides(k=9, collection=None).k == 9
    assert isinstance(settings.with_overrides(), Settings)


def test_import_makes_process_offline() -> None:
    """A fresh process that imports rag has every offline switch set (checked in a child:
    in this process, Gradio's launch() rewrites HF_HUB_DISABLE_TELEMETRY to "True")."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENVIRONMENT}
    script = "import json, os, rag.config; print(json.dumps(dict(os.environ)))"
    child = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    seen = json.loads(child.stdout)
    for key, value in OFFLINE_ENVIRONMENT.items():
        assert seen.get(key) == value, key


# The same precedence through the real CLI (`rag stats` loads no model: cheap) ----------------


def _stats(run_rag, *args: str, env: dict | None = None, cwd: Path | None = None) -> dict:
    result = run_rag("stats", "--json", *args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_precedence(tmp_path: Path, run_rag) -> None:
    toml = tmp_path / "rag.toml"
    toml.write_text('collection = "from-toml"\n')
    assert _stats(run_rag)["collection"] == "documents"
    assert _stats(run_rag, env={"RAG_CONFIG": str(toml)})["collection"] == "from-toml"
    both = {"RAG_CONFIG": str(toml), "RAG_COLLECTION": "from-env"}
    assert _stats(run_rag, env=both)["collection"] == "from-env"
    assert _stats(run_rag, "--collection", "from-flag", env=both)["collection"] == "from-flag"
    # rag.toml in the working directory is read when RAG_CONFIG is not set
    assert _stats(run_rag, env={"RAG_CONFIG": None}, cwd=tmp_path)["collection"] == "from-toml"


def test_cli_index_flag_and_env_are_the_same_setting(tmp_path: Path, run_rag, embedder) -> None:
    from rag.ingest import ingest

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Some text about tides and harbours.")
    ingest([docs], load_settings(index_dir=tmp_path / "built"), embedder=embedder)
    by_flag = _stats(run_rag, "--index", str(tmp_path / "built"))
    by_env = _stats(run_rag, env={"RAG_INDEX_DIR": str(tmp_path / "built")})
    assert by_flag == by_env and by_flag["documents"] == 1
    flag_wins = _stats(
        run_rag, "--index", str(tmp_path / "built"), env={"RAG_INDEX_DIR": str(tmp_path / "n")}
    )
    assert flag_wins["documents"] == 1


def test_cli_invalid_config_is_one_line(tmp_path: Path, run_rag, clean_failure) -> None:
    clean_failure(run_rag("stats", env={"RAG_CHUNK_SIZE": "50"}), "chunk_size")
    broken = tmp_path / "broken.toml"
    broken.write_text("k = [\n")
    clean_failure(run_rag("stats", env={"RAG_CONFIG": str(broken)}), "broken.toml")
