"""The UI's actions as plain methods over one shared pipeline (:class:`ChatService`), and
what the page offers at start: example questions, the seeds folder, the LLM choices."""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rag.config import RagError, Settings
from rag.ui import render
from rag.ui.conversation import Conversations, History, Streamer

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
