"""Hostile upload names through the running app's HTTP routes (not just the helper): `../`,
absolute paths, NUL bytes, reserved names, `.`/`..` — each lands inside the upload folder under a
safe name or is refused; a request naming a server file outside the upload cache is refused."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_ui_support import ROOT, SEED_FILE, in_process_ui

from rag.config import load_settings
from rag.ui.uploads import _RESERVED

HOSTILE_NAMES: list[bytes] = [
    b"../../escape-1.txt",
    b"..\\..\\escape-2.txt",
    b"/etc/escape-3.txt",
    b"/tmp/escape-4.md",
    b"nul\x00byte.txt",
    b"trunc.txt\x00.exe",
    b"CON.txt",
    b"aux",
    b"LPT1.md",
    b".",
    b"..",
    b"...",
    b"  .hidden.txt",
    b"a/../../escape-5.txt",
    b"%2e%2e%2fescape-6.txt",
    b'<img src=x onerror="alert(1)">.txt',
    "résumé ①.txt".encode(),
]
BODY = b"The Halvorsen lighthouse is 48 metres tall and was first lit in 1871.\n"


@pytest.fixture
def app(shared_embedder, tmp_path: Path):
    settings = load_settings(index_dir=tmp_path / "index", llm="extractive")
    with in_process_ui(settings) as url:
        yield url, settings


def _raw_upload(url: str, name: bytes) -> httpx.Response:
    """A multipart upload whose filename is exactly ``name`` (raw bytes, NUL included)."""
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="files"; filename="'
        + name.replace(b'"', b"%22")
        + b'"\r\nContent-Type: text/plain\r\n\r\n'
        + BODY
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return httpx.post(
        url + "gradio_api/upload",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )


def _call(url: str, api_name: str, data: list[Any]) -> tuple[str, Any]:
    """Call a queued endpoint over plain HTTP: ('complete', outputs) or ('error', message)."""
    started = httpx.post(f"{url}gradio_api/call/{api_name}", json={"data": data}, timeout=30)
    started.raise_for_status()
    event_id = started.json()["event_id"]
    kind, payload = "", None
    with httpx.stream("GET", f"{url}gradio_api/call/{api_name}/{event_id}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                break
    return kind, payload


def _is_safe(name: str) -> bool:
    stem = name.rsplit(".", 1)[0].split(".")[0].upper()
    return (
        "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not name.startswith((".", " "))
        and stem not in _RESERVED
        and name.rsplit(".", 1)[-1] in ("txt", "md")
    )


def test_hostile_names_land_inside_the_upload_folder_or_are_refused(app, tmp_path: Path) -> None:
    url, settings = app
    uploaded: list[dict[str, Any]] = []
    rejected_early = 0
    for name in HOSTILE_NAMES:
        response = _raw_upload(url, name)
        if response.status_code != 200:
            rejected_early += 1  # Gradio refused the name itself (e.g. "..")
            continue
        (path,) = response.json()
        uploaded.append({"path": path, "meta": {"_type": "gradio.FileData"}})
    kind, outputs = _call(url, "upload", [uploaded])
    assert kind == "complete", outputs
    status = outputs[0]

    upload_dir = settings.upload_dir.resolve()
    stored = sorted(path.name for path in upload_dir.iterdir())
    assert stored, status
    for name in stored:
        assert _is_safe(name), (name, stored)
        assert (upload_dir / name).read_bytes() == BODY
    refused = len(re.findall(r"<li>", status))
    assert len(stored) + refused + rejected_early == len(HOSTILE_NAMES), (stored, status)
    assert "nothing indexed" not in status and f"{len(stored)} added" in status, status

    # Nothing escaped: no copy of the upload outside the folder, no escape-N file anywhere near.
    outside = [
        found
        for found in tmp_path.rglob("*")
        if found.is_file() and _head(found) == BODY and found.parent != upload_dir
    ]
    assert outside == [], outside
    for folder in (tmp_path, ROOT, ROOT.parent, Path("/tmp"), Path("/etc")):
        escaped = [p for p in folder.glob("escape-*") if p.parent != upload_dir]
        assert escaped == [], escaped


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(BODY) + 1)
    except OSError:
        return b""


@pytest.mark.parametrize("target", [str(SEED_FILE), "/etc/passwd", "../../etc/passwd"])
def test_a_server_path_outside_the_upload_cache_is_refused(app, target: str) -> None:
    url, settings = app
    kind, _ = _call(url, "upload", [[{"path": target, "meta": {"_type": "gradio.FileData"}}]])
    assert kind == "error"
    assert not settings.upload_dir.exists() or not any(settings.upload_dir.iterdir())
