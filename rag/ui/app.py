"""The Gradio chat app: the page's layout and its events, wired to :class:`ChatService`.

:class:`~rag.ui.service.ChatService` holds what one process shares (the settings and the loaded
pipeline) and offers the UI's actions as plain methods; :func:`build_app` lays out the page and
wires events to them. Rendering lives in :mod:`rag.ui.render`, upload safety in
:mod:`rag.ui.uploads`, the style sheet and start-up script in :mod:`rag.ui.assets`.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rag.config  # noqa: F401  (offline environment before gradio is imported)
from rag.config import RagError
from rag.ui import render
from rag.ui.assets import ON_LOAD
from rag.ui.service import ChatService, example_questions
from rag.ui.uploads import store_uploads

ANSWER_GROUP = "answer"
INGEST_GROUP = "ingest"


def theme() -> Any:
    """Soft theme on system fonts only: the page loads nothing from outside the server."""
    import gradio as gr

    return gr.themes.Soft(
        primary_hue="indigo",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


def build_app(service: ChatService) -> Any:
    """The Gradio Blocks app over ``service``."""
    import gradio as gr

    settings = service.settings
    concurrency = settings.concurrency
    stats, _ = service.stats()
    examples = example_questions(stats["sources"] if stats else [])
    allowed = ", ".join(ext.lstrip(".") for ext in _supported_extensions())

    conversations = service.conversations

    def enqueue(message: str, request: gr.Request) -> tuple[str, list[dict[str, Any]]]:
        """Show the question at once (queued if an answer is running) and clear the box."""
        conversation = conversations.get(request.session_hash)
        conversation.enqueue(message)
        return "", conversation.view()

    def drain(
        k: float, llm: str | None, extractive: bool, request: gr.Request
    ) -> Iterator[list[dict[str, Any]]]:
        """Answer this session's queued questions in order, streaming each into the chat."""
        conversation = conversations.get(request.session_hash)
        yield from conversation.drain(service.streamer(k, llm, extractive))

    def chat(
        message: str, k: float, llm: str | None, extractive: bool, request: gr.Request
    ) -> Iterator[list[dict[str, Any]]]:
        """Ask in this session's conversation (follow-ups read in its context) and stream the
        whole chat back: pending note, draft, then the checked answer with its sources."""
        conversation = conversations.get(request.session_hash)
        conversation.enqueue(message)
        yield from conversation.drain(service.streamer(k, llm, extractive))

    def pick_example(event: gr.SelectData, request: gr.Request) -> tuple[str, list]:
        value = event.value
        text = str(value.get("text", "") if isinstance(value, dict) else value)
        return enqueue(text, request)

    def clear(request: gr.Request) -> list[dict[str, Any]]:
        conversation = conversations.get(request.session_hash)
        conversation.clear()
        return conversation.view()

    def regenerate(request: gr.Request) -> list[dict[str, Any]]:
        """Ask the last question again, in place of its answer."""
        conversation = conversations.get(request.session_hash)
        conversation.regenerate()
        return conversation.view()

    def forget(request: gr.Request) -> None:
        conversations.forget(request.session_hash)

    def upload(
        files: list[str] | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[str, str, None]:
        """Store the uploaded files safely, ingest them, report per file."""
        if not files:
            return "", service.stats_html(), None
        stored = store_uploads(files, settings.upload_dir, settings.max_upload_mb)
        report = None
        kept: list[Path] = []
        if stored.stored:
            try:
                result = service.ingest(stored.stored, _progress_callback(progress))
            except RagError as error:
                stored.settle(stored.stored)
                return render.error_html(str(error)), service.stats_html(), None
            kept = stored.settle(Path(failure.path) for failure in result.failed)
            report = result.to_dict()
            for failure in report["failed"]:
                failure["path"] = Path(failure["path"]).name
        names = [path.name for path in kept]
        status = render.ingest_html(report, stored.refused, names, heading="Upload")
        return status, service.stats_html(), None

    def reindex(
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple[str, str]:
        """Re-ingest the bundled ``seeds/`` folder (incremental: unchanged files are skipped)."""
        if service.seeds_dir is None:
            return render.error_html("no seeds/ folder next to this app"), service.stats_html()
        try:
            report = service.ingest([service.seeds_dir], _progress_callback(progress)).to_dict()
        except RagError as error:
            return render.error_html(str(error)), service.stats_html()
        status = render.ingest_html(report, heading=f"Re-index {service.seeds_dir.name}/")
        return status, service.stats_html()

    def ask(
        question: str,
        history: list | None = None,
        k: int | None = None,
        llm: str | None = None,
    ) -> dict:
        """Answer a question from the indexed documents: the same JSON object as
        `rag ask --json` (answer with [n] markers, refused, citations with exact quotes)."""
        try:
            return service.ask(question, history, k, llm)
        except RagError as error:
            raise gr.Error(str(error), print_exception=False) from None

    with gr.Blocks(title="rag · cited answers from your documents", fill_height=True) as demo:
        with gr.Sidebar(label="Index", open=True, width=340, position="left"):
            gr.Markdown("### Index")
            stats_view = gr.HTML(service.stats_html(), label="Index", elem_id="rag-stats")
            files = gr.File(
                label="Add documents",
                file_count="multiple",
                elem_id="rag-upload",
            )
            gr.HTML(
                f'<div class="rag-meta">{allowed} · up to {settings.max_upload_mb:g} MB each · '
                "indexed as soon as they are uploaded</div>",
                elem_id="rag-upload-note",
                padding=False,
            )
            upload_status = gr.HTML("", label="Upload status", elem_id="rag-upload-status")
            reindex_button = gr.Button(
                "Re-index seeds/",
                size="sm",
                variant="secondary",
                elem_id="rag-reindex",
                interactive=service.seeds_dir is not None,
            )
            with gr.Accordion("Answer settings (this session)", open=False, elem_id="rag-settings"):
                top_k = gr.Slider(
                    1, 20, value=settings.k, step=1, label="Passages per answer (top-k)"
                )
                quote_only = settings.llm == "extractive" or not service.llm_choices
                llm_choice = gr.Dropdown(
                    choices=service.llm_choices,
                    value=service.default_llm or (service.llm_choices or [None])[0],
                    label="LLM backend",
                    visible=bool(service.llm_choices),
                    interactive=not quote_only,
                    elem_id="rag-llm",
                )
                extractive = gr.Checkbox(
                    value=quote_only,
                    label="Extractive mode: quote the documents, no LLM (fastest)",
                    elem_id="rag-extractive",
                )
        with gr.Column(scale=1):
            gr.Markdown(
                "# Ask your documents\nEvery answer cites the passages it comes from — "
                "or says plainly that the documents don't answer it.",
                elem_id="rag-title",
            )
            chatbot = gr.Chatbot(
                elem_id="rag-chat",
                label="Conversation",
                show_label=False,
                height="62vh",
                min_height=320,
                latex_delimiters=[],
                sanitize_html=True,
                render_markdown=True,
                feedback_options=None,
                buttons=[],
                group_consecutive_messages=True,
                placeholder="**Ask a question about the indexed documents.** "
                "Answers cite their sources as [1], [2] …; open *Sources* under an answer "
                "to see each quote in its passage.",
                examples=[{"text": q, "display_text": q} for q in examples] or None,
                scale=1,
            )
            with gr.Row(equal_height=True, elem_id="rag-input-row"):
                question = gr.Textbox(
                    placeholder="Ask a question about your documents…",
                    label="Question",
                    show_label=False,
                    lines=1,
                    max_lines=6,
                    scale=8,
                    elem_id="rag-question",
                    autofocus=True,
                    submit_btn=False,
                )
                ask_button = gr.Button("Ask", variant="primary", scale=0, min_width=80)
                new_button = gr.Button("New chat", variant="secondary", scale=0, min_width=128)

        settings_inputs = [top_k, llm_choice, extractive]
        answer_options: dict[str, Any] = {
            "concurrency_limit": concurrency,
            "concurrency_id": ANSWER_GROUP,
            "show_progress": "hidden",
        }
        # Enqueue runs at once (no queue) and may fire any number of times; the drain that
        # follows runs once more after a pending one ("always_last"), and the conversation
        # itself makes sure only one drains at a time, so nothing is lost or answered twice.
        enqueue_options: dict[str, Any] = {
            "queue": False,
            "trigger_mode": "multiple",
            "show_progress": "hidden",
            "api_visibility": "private",
        }
        drain_options = {**answer_options, "trigger_mode": "always_last",
                         "api_visibility": "private"}  # fmt: skip
        for trigger in (question.submit, ask_button.click):
            trigger(enqueue, question, [question, chatbot], **enqueue_options).then(
                drain, settings_inputs, chatbot, **drain_options
            )
        chatbot.example_select(pick_example, None, [question, chatbot], **enqueue_options).then(
            drain, settings_inputs, chatbot, **drain_options
        )
        new_button.click(clear, None, chatbot, api_visibility="private")
        # Regenerate (under the newest answer) clicks this hidden button from the page script.
        regenerate_button = gr.Button("Regenerate", elem_id="rag-regenerate")
        regenerate_button.click(regenerate, None, chatbot, **enqueue_options).then(
            drain, settings_inputs, chatbot, **drain_options
        )
        # The API's chat endpoint (one call: enqueue and stream), bound to a hidden trigger.
        api_chat = gr.Button(visible=False, elem_id="rag-api-chat")
        api_chat.click(chat, [question, *settings_inputs], chatbot, api_name="chat",
                       **answer_options)  # fmt: skip
        demo.unload(forget)
        extractive.change(
            lambda on: gr.update(interactive=not on),
            extractive,
            llm_choice,
            api_visibility="private",
            show_progress="hidden",
            queue=False,
        )
        files.upload(
            upload,
            files,
            [upload_status, stats_view, files],
            api_name="upload",
            concurrency_limit=1,
            concurrency_id=INGEST_GROUP,
            show_progress="full",
        )
        reindex_button.click(
            reindex,
            None,
            [upload_status, stats_view],
            api_name="reindex",
            concurrency_limit=1,
            concurrency_id=INGEST_GROUP,
        )
        demo.load(
            service.stats_html,
            None,
            stats_view,
            api_visibility="private",
            show_progress="hidden",
            js=ON_LOAD,
        )
        gr.api(
            ask,
            api_name="ask",
            concurrency_limit=concurrency,
            concurrency_id=ANSWER_GROUP,
        )
    return demo


def _supported_extensions() -> tuple[str, ...]:
    from rag.loaders import SUPPORTED_EXTENSIONS

    return SUPPORTED_EXTENSIONS


def _progress_callback(progress: Any) -> Callable[[Any], None]:
    def update(event: Any) -> None:
        total = max(int(event.files_total), 1)
        progress(
            (min(int(event.files_done), total), total),
            desc=f"indexing · {event.chunks_written} chunks",
            unit="files",
        )

    return update
