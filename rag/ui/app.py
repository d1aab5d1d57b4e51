"""The Gradio chat app: a thin layer over ``rag.answer.RAG`` and ``rag.ingest``.

:class:`ChatService` holds what one process shares (the settings and the loaded pipeline) and
offers the UI's actions as plain methods; :func:`build_app` lays out the page and wires events
to them. Rendering lives in :mod:`rag.ui.render`, upload safety in :mod:`rag.ui.uploads`.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import rag.config  # noqa: F401  (offline environment before gradio is imported)
from rag.config import RagError, Settings
from rag.ui import render
from rag.ui.conversation import Conversations, History, Streamer
from rag.ui.uploads import store_uploads

log = logging.getLogger("rag.ui")

MAX_EXAMPLES = 3


def example_questions(sources: list[str]) -> list[str]:
    """Starter questions about what is indexed (named after its first few documents); none
    for an empty index."""
    names = []
    for source in sources[:MAX_EXAMPLES]:
        stem = Path(source).stem.replace("_", " ").replace("-", " ")
        names.append(" ".join(stem.split()))
    return [f"What is {name} about?" for name in names if name]


DEFAULT_SEEDS = Path("seeds")
ANSWER_GROUP = "answer"
INGEST_GROUP = "ingest"


def find_seeds_dir() -> Path | None:
    """``seeds/`` in the working directory, else the one next to the package (a checkout)."""
    for candidate in (Path.cwd() / DEFAULT_SEEDS, Path(__file__).resolve().parents[2] / "seeds"):
        if candidate.is_dir():
            return candidate
    return None


def available_llms(settings: Settings) -> list[str]:
    """LLM backends a session may choose: the configured one, and the packaged local model
    when it is installed (``extractive`` is offered as its own switch)."""
    from rag.llm import parse_spec

    choices: list[str] = []
    for spec in (settings.llm, "local"):
        try:
            label = parse_spec(spec).label
        except RagError:
            continue
        if label != "extractive" and label not in choices:
            choices.append(label if spec != "local" else "local")
    return choices


class ChatService:
    """The UI's actions over one shared pipeline (models load once per process)."""

    def __init__(self, settings: Settings, bot: Any = None, seeds_dir: Path | None = None):
        from rag.answer import RAG

        self.settings = settings
        self.bot = bot if bot is not None else RAG(settings)
        self.llm_choices = available_llms(settings)
        self.default_llm = (
            self.llm_choices[0] if self.llm_choices and settings.llm != "extractive" else None
        )
        self.seeds_dir = seeds_dir
        self._ingest_lock = threading.Lock()
        self.conversations = Conversations()

    # Index ---------------------------------------------------------------------------------

    def stats(self) -> tuple[dict[str, Any] | None, str | None]:
        """(index stats, None) or (None, the reason they are unavailable)."""
        from rag.ingest import index_stats

        try:
            return index_stats(self.settings), None
        except RagError as error:
            return None, str(error)

    def stats_html(self) -> str:
        stats, error = self.stats()
        return render.stats_html(stats, self.settings.llm, error)

    def ingest(self, paths: list[Path], progress: Callable[[Any], None] | None = None) -> Any:
        """Ingest into the shared index (one ingest at a time) and refresh keyword search."""
        from rag.ingest import ingest

        with self._ingest_lock:
            try:
                return ingest(
                    paths, self.settings, prune=True, progress=progress, embedder=self.bot.embedder
                )
            finally:
                self.bot.searcher.invalidate()

    # Questions -----------------------------------------------------------------------------

    def resolve_llm(self, llm: str | None, extractive: bool = False) -> str | None:
        """The backend for a request: ``extractive``, one of the offered ones, or the default."""
        if extractive or llm == "extractive":
            return "extractive"
        if not llm:
            return None
        if llm not in self.llm_choices:
            offered = ", ".join([*self.llm_choices, "extractive"])
            raise RagError(f"llm must be one of: {offered}")
        return llm

    def stream(
        self, question: str, history: History, k: int | None, llm: str | None
    ) -> Iterator[Any]:
        return self.bot.stream(question, history, k=k, llm=llm)

    def streamer(self, k: float | None, llm: str | None, extractive: bool = False) -> Streamer:
        """``stream`` with one request's settings bound (an invalid backend fails on use)."""

        def stream(question: str, history: History) -> Iterator[Any]:
            backend = self.resolve_llm(llm, extractive)
            return self.stream(question, history, int(k) if k else None, backend)

        return stream

    def ask(
        self, question: str, history: list[Any] | None, k: int | None, llm: str | None
    ) -> dict[str, Any]:
        """The ``rag ask --json`` object."""
        if k is not None and not 1 <= int(k) <= 50:
            raise RagError("k must be between 1 and 50")
        answer = self.bot.ask(
            question, history or None, k=int(k) if k else None, llm=self.resolve_llm(llm)
        )
        return answer.to_dict()


# The page ----------------------------------------------------------------------------------

CSS = """
.gradio-container { max-width: 1280px !important; }
#rag-title h1 { margin: 0; font-size: 1.35rem; }
#rag-title p { margin: 0.15rem 0 0; color: var(--body-text-color-subdued); }
.rag-answer, .rag-refusal, .rag-error, .rag-pending, .rag-partial, .rag-question {
  line-height: 1.55; overflow-wrap: anywhere;
}
.rag-cite { color: var(--color-accent); font-weight: 600; font-size: 0.75em; }
.rag-answer .rag-cite { cursor: pointer; text-decoration: underline dotted; }
.rag-copytext, #rag-regenerate { display: none !important; }
.rag-actions { margin-left: 0.6rem; }
.rag-action { cursor: pointer; color: var(--color-accent); margin-right: 0.6rem; }
.rag-action:hover { text-decoration: underline; }
.rag-source { border-radius: 6px; }
.rag-flash { animation: rag-flash 1.6s ease-out; }
@keyframes rag-flash {
  0% { box-shadow: 0 0 0 3px #f59e0b; } 100% { box-shadow: 0 0 0 3px transparent; }
}
.rag-meta { color: var(--body-text-color-subdued); font-size: 0.8em; margin-top: 0.35rem; }
.rag-partial::after { content: "▍"; animation: rag-blink 1s steps(1) infinite; }
@keyframes rag-blink { 50% { opacity: 0; } }
.rag-pending, .rag-queued { color: var(--body-text-color-subdued); }
.rag-queued { font-style: italic; font-size: 0.9em; }
.rag-refusal {
  border-left: 4px solid #d97706; background: rgba(217, 119, 6, 0.10);
  padding: 0.5rem 0.75rem; border-radius: 6px;
}
.rag-refusal-label, .rag-error-label {
  display: inline-block; font-weight: 700; font-size: 0.8em; text-transform: uppercase;
  letter-spacing: 0.03em; margin-bottom: 0.2rem;
}
.rag-refusal-label { color: #b45309; }
.rag-error {
  border-left: 4px solid #dc2626; background: rgba(220, 38, 38, 0.08);
  padding: 0.5rem 0.75rem; border-radius: 6px;
}
.rag-error-label { color: #b91c1c; margin-right: 0.4rem; }
.rag-sources { display: flex; flex-direction: column; gap: 0.6rem; }
.rag-source-head { font-size: 0.85em; margin-bottom: 0.25rem; overflow-wrap: anywhere; }
.rag-source-n { font-weight: 700; color: var(--color-accent); }
.rag-source-title { font-size: 0.8em; color: var(--body-text-color-subdued); }
.rag-chunk {
  font-size: 0.85em; line-height: 1.5; padding: 0.5rem 0.65rem; border-radius: 6px;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  max-height: 16rem; overflow-y: auto; overflow-wrap: anywhere; white-space: normal;
}
.rag-chunk mark { background: #fde68a; color: #1f2937; padding: 0 1px; border-radius: 2px; }
.rag-stats .rag-counts { font-size: 1rem; }
.rag-source-list {
  margin: 0.4rem 0 0; padding-left: 1.1rem; max-height: 12rem; overflow-y: auto;
  font-size: 0.85em; overflow-wrap: anywhere;
}
.rag-empty { color: var(--body-text-color-subdued); font-size: 0.9em; margin-top: 0.4rem; }
.rag-ok { color: #15803d; }
.rag-warn { color: #b45309; }
.rag-problems { margin: 0; padding-left: 1.1rem; overflow-wrap: anywhere; }
.rag-ingest { font-size: 0.9em; }
#rag-chat { flex-grow: 1; }
#rag-upload-note, #rag-upload-note *, #rag-upload-status, #rag-upload-status * {
  min-height: 0 !important;
}
#rag-upload-note .html-container, #rag-upload-status .html-container {
  padding-top: 0 !important; padding-bottom: 0 !important;
}
/* "New chat" clears the conversation; Gradio's own clear icon would cover the top message. */
#rag-chat .icon-button-wrapper.top-panel { display: none !important; }
/* Gradio's footer leaves a lone separator dot after "Use via API". */
footer .divider, footer .record.hidden { display: none !important; }
/* The settings accordion's arrow points right when closed, down when open. */
#rag-settings .label-wrap .icon[style*="rotate(90deg)"] { transform: rotate(-90deg) !important; }
/* Example questions look like something to click. */
#rag-chat .examples .example {
  border: 1px solid var(--border-color-accent, #c7d2fe); border-radius: 999px;
  background: var(--background-fill-primary); padding: 0.35rem 0.9rem; cursor: pointer;
}
#rag-chat .examples .example:hover { background: var(--color-accent-soft, #eef2ff); }
#rag-input-row { align-items: stretch; }
@media (max-width: 640px) {
  #rag-input-row { flex-wrap: nowrap !important; gap: 6px !important; }
  #rag-input-row > button { min-width: 0 !important; padding-left: 10px !important;
                            padding-right: 10px !important; flex: 0 0 auto !important; }
  #rag-input-row > .form { min-width: 0 !important; }
  #rag-title { padding-left: 36px; }
  #rag-title p { display: none; }
  .rag-chunk { max-height: 12rem; }
  #rag-chat .message-row {
    margin-left: 2px !important; margin-right: 2px !important;
    max-width: calc(100% - 4px) !important;
  }
}
"""


# On load: a phone screen is too narrow for the side panel and the chat together, so it starts
# closed; and a click on an answer's [n] opens that answer's Sources block and scrolls to
# source n (its quote is already highlighted), flashing it.
ON_LOAD = r"""
() => {
  if (window.innerWidth < 768) {
    const toggle = document.querySelector('.sidebar.open .toggle-button, '
      + '.sidebar.open button[aria-label="Toggle Sidebar"]');
    if (toggle) toggle.click();
  }
  if (window.__ragCitations) return;
  window.__ragCitations = true;
  const sourcesAfter = (cite) => {
    const groups = document.querySelectorAll('#rag-chat .thought-group');
    for (const group of groups) {
      if (cite.compareDocumentPosition(group) & Node.DOCUMENT_POSITION_FOLLOWING) return group;
    }
    return null;
  };
  document.addEventListener('click', (event) => {
    const action = event.target.closest && event.target.closest('#rag-chat .rag-action');
    if (action) {
      const message = action.closest('.rag-answer, .rag-refusal');
      if (action.classList.contains('rag-copy') && message) {
        const holder = document.createElement('div');
        holder.innerHTML = message.querySelector('.rag-copytext').innerHTML
          .replace(/<br\s*\/?>/gi, '\n');
        const text = holder.textContent;
        const done = () => { action.textContent = 'Copied'; window.__ragCopied = text;
                             setTimeout(() => { action.textContent = 'Copy'; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, done);
        } else {
          done();
        }
      } else if (action.classList.contains('rag-regen')) {
        const trigger = document.querySelector('#rag-regenerate');
        if (trigger) trigger.click();
      }
      return;
    }
    const cite = event.target.closest && event.target.closest('#rag-chat .rag-answer sup.rag-cite');
    if (!cite) return;
    const n = cite.textContent.replace(/[^0-9]/g, '');
    const group = sourcesAfter(cite);
    if (!group) return;
    const find = () => Array.from(group.querySelectorAll('.rag-source')).find(
      (el) => (el.querySelector('.rag-source-n') || {}).textContent === '[' + n + ']');
    const visible = (el) => el && el.offsetParent !== null;
    if (!visible(find())) {
      const title = group.querySelector('.title');
      if (title) title.click();
    }
    let tries = 0;
    const show = () => {
      const target = find();
      if (visible(target)) {
        target.scrollIntoView({block: 'center', behavior: 'smooth'});
        target.classList.remove('rag-flash');
        void target.offsetWidth;
        target.classList.add('rag-flash');
      } else if (++tries < 40) {
        setTimeout(show, 50);
      }
    };
    show();
  });
}
"""


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
