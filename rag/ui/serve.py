"""``rag serve`` / ``python app.py``: start the web UI safely.

Binds 127.0.0.1 unless told otherwise; a non-loopback bind needs ``RAG_AUTH=user:password``
(Gradio's login) or an explicit ``insecure=True``. The pipeline is loaded (and warmed up) once
before the server starts, so the first question is as fast as the next.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
import time
from typing import Any

from rag.config import ConfigError, RagError, Settings
from rag.llm import parse_spec

log = logging.getLogger("rag.ui")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; anything else may be reachable."""
    value = host.strip().strip("[]").lower()
    if value in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, insecure: bool = False) -> str | None:
    """Refuse a reachable bind without auth (ConfigError); return a warning when overridden."""
    if is_loopback(settings.host) or settings.auth:
        return None
    if not insecure:
        raise ConfigError(
            f"refusing to serve on {settings.host}: that address can be reached from other "
            "machines and no login is set. Set RAG_AUTH=user:password to require one, bind "
            "127.0.0.1 (the default), or pass --insecure to serve without a login anyway."
        )
    return (
        f"WARNING: serving on {settings.host} without a login (--insecure): anyone who can "
        "reach this port can read your documents and upload files."
    )


def check_port(host: str, port: int) -> None:
    """Fail fast (before any model loads) when the address cannot be bound."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise RagError(
                f"cannot serve on {host}:{port}: {error.strerror or error}. Is another server "
                "using the port? Pass --port (RAG_PORT) to choose another."
            ) from None


def auth_pair(settings: Settings) -> tuple[str, str] | None:
    if not settings.auth:
        return None
    user, _, password = settings.auth.partition(":")
    return user, password


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def warm_up(service: Any) -> None:
    """Load what the first question needs: the embedder, the reader, the keyword index, the
    local LLM."""
    bot = service.bot
    spec = bot.default_spec if service.default_llm else parse_spec("extractive")
    bot.load(spec)


def launch(
    settings: Settings, insecure: bool = False, block: bool = True
) -> tuple[Any, str, dict[str, Any]]:
    """Check the bind, load the pipeline once, start the server and log where it is.

    Returns (the Gradio app, its URL, startup info). With ``block`` it serves until stopped."""
    started = time.perf_counter()
    warning = check_bind(settings, insecure)
    check_port(settings.host, settings.port)
    import rag.config  # noqa: F401  (offline environment before gradio is imported)
    from rag.ui.app import build_app, theme
    from rag.ui.service import ChatService, find_seeds_dir

    service = ChatService(settings, seeds_dir=find_seeds_dir())
    # Models load in the background while Gradio is imported and the page is built.
    failures: list[BaseException] = []
    warming = threading.Thread(
        target=_capture(warm_up, failures), args=(service,), name="rag-warm-up", daemon=True
    )
    warming.start()
    demo = build_app(service)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=512)
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            auth=auth_pair(settings),
            auth_message="Sign in with the RAG_AUTH user and password." if settings.auth else None,
            share=False,
            quiet=True,
            show_error=False,
            prevent_thread_lock=True,
            max_file_size=int(settings.max_upload_mb * 1e6),
            ssr_mode=False,
            pwa=False,
            mcp_server=False,
            enable_monitoring=False,
            footer_links=["api"],
            theme=theme(),
            css=_css(),
        )
    except OSError as error:
        raise RagError(
            f"cannot serve on {settings.host}:{settings.port}: {error}. Is another server using "
            "the port? Pass --port (RAG_PORT) to choose another."
        ) from None
    warming.join()
    if failures:
        demo.close()
        raise failures[0]
    url = _display_url(settings, demo)
    seconds = time.perf_counter() - started
    stats, stats_error = service.stats()
    info = {"url": url, "startup_s": round(seconds, 2), "llm": settings.llm, "stats": stats}
    if warning:
        _say(warning)
    _say(f"rag web UI: {url}  (ready in {seconds:.1f} s; {time.process_time():.1f} s CPU)")
    if stats is not None:
        where = settings.chroma_url or str(settings.index_dir)
        _say(
            f"index: {where} · collection {stats['collection']} · "
            f"{plural(stats['documents'], 'document')}, {plural(stats['chunks'], 'chunk')} · "
            f"embeddings {stats['embedding_model']}"
        )
    else:
        _say(f"index: unavailable ({stats_error})")
    _say(
        f"LLM: {settings.llm} · login: {'required' if settings.auth else 'none'} · "
        f"concurrency {settings.concurrency} · uploads to {settings.upload_dir}"
    )
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo, url, info


def _capture(func: Any, failures: list[BaseException]) -> Any:
    def run(*args: Any) -> None:
        try:
            func(*args)
        except BaseException as error:
            failures.append(error)

    return run


def _display_url(settings: Settings, demo: Any) -> str:
    port = getattr(demo, "server_port", None) or settings.port
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _css() -> str:
    from rag.ui.assets import CSS

    return CSS
