"""The reader: a small extractive QA model that says whether a sentence answers a question.

It is all-MiniLM-L6-v2's encoder (the packaged embedding model's weights) fine-tuned on SQuAD
with a start/end span head (``BertForQuestionAnswering``), trained by ``make train-reader``
(``rag/train/reader.py``) and shipped in ``rag/models/reader/`` (model card there). For a
question and a candidate sentence (with its document's title for context) it scores the best
answer span inside the sentence against "no answer here" (the [CLS] position, as in SQuAD 2.0).
The score ranks sentences, decides whether the documents answer at all (a threshold set on
held-out validation articles, ``rag.answer`` states it), and its span is the direct answer.

A model trained on passages (``python -m rag.train.reader --passages``; ``"input": "passage"``
in its reader.json) is read a chunk at a time instead: ``score_passages`` scores every
sentence of a passage from one read of it. The shipped model reads sentences (the model card
has what a passage reader measured).
"""

from __future__ import annotations

import functools
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import RagError

READER_DIR = Path(__file__).resolve().parent / "models" / "reader"
MAX_LENGTH = 128  # question + title + sentence, in tokens; longer inputs are truncated
PASSAGE_MAX_LENGTH = 320  # question + title + passage (a 1,000-character chunk: ~230 tokens)
MAX_ANSWER_TOKENS = 30
BATCH_SIZE = 4  # candidates per model call, grouped by length (less padding; 4: 6 % faster than 8)
TITLE_SEPARATOR = " | "
NO_ROOM = -1e4  # the score of a sentence truncation left no token of in the reader's input
RESTORE_HINT = (
    "run `make train-reader` to rebuild it, or restore the shipped one "
    "(git checkout rag/models/reader, or reinstall the project)"
)


class ReaderError(RagError):
    """The reader model is missing or unreadable."""


def reader_text(title: str, sentence: str) -> tuple[str, int]:
    """The second segment the reader reads, and where the sentence starts in it."""
    title = " ".join(title.split())
    if not title:
        return sentence, 0
    prefix = title + TITLE_SEPARATOR
    return prefix + sentence, len(prefix)


def with_context(title: str, before: str) -> str:
    """The title argument of ``Reader.score`` that makes the reader read a sentence after the
    sentence before it ("Title | sentence before | sentence"); answer spans stay inside the
    sentence."""
    before = " ".join(before.split())
    if not before:
        return title
    return f"{title}{TITLE_SEPARATOR}{before}" if title.strip() else before


@dataclass(frozen=True)
class Calibration:
    """Decision thresholds, set by ``rag.train.calibrate`` on held-out validation articles
    (figures in reader.json and the model card). The defaults serve an uncalibrated model.

    Whether the documents answer at all is a logistic combination of a reader score and the
    best chunk's cosine similarity to the question (the reader alone misses that a question is
    about something the index does not cover at all); ``answer_threshold`` applies to it. The
    reader score there is the best of the top few sentences each read after the sentence
    before it (``with_context``; the answer pipeline's ``context_score``): with it the reader
    refuses more near misses at the same false-refusal rate, while ranking stays on the
    sentences alone. A single sentence counts as answering when its reader
    score reaches ``sentence_threshold``.

    A candidate sentence's score (what ranks sentences, and what ``sentence_threshold``,
    ``second_sentence_margin`` and ``direct_answer_threshold`` apply to) is ``sentence_score``:
    a logistic regression's logit of "this sentence holds the answer" on the reader's score,
    the sentence's cosine similarity to the question and its chunk's retrieval rank. The
    defaults make it the reader's score alone."""

    rank_reader_weight: float = 1.0
    rank_cosine_weight: float = 0.0
    rank_chunk_weight: float = 0.0  # per place down the retrieved chunks (0 = best)
    rank_bias: float = 0.0
    answer_reader_weight: float = 1.0
    answer_dense_weight: float = 0.0
    answer_bias: float = 0.0
    answer_threshold: float = 0.0  # refuse below this answerability
    sentence_threshold: float = 0.0  # a sentence answers from this reader score up
    second_sentence_margin: float = 1.0  # quote a second sentence this close to the best
    direct_answer_threshold: float = 1e4  # lead with the short answer from this score up
    # Which sentences the reader reads (``selection_score``); the defaults: the nearest by cosine.
    select_cosine_weight: float = 1.0
    select_overlap_weight: float = 0.0
    select_chunk_weight: float = 0.0
    select_length_weight: float = 0.0

    @classmethod
    def from_values(cls, values: dict) -> Calibration:
        """The calibration from reader.json's ``calibration`` (keys it does not know ignored)."""
        fields = cls.__dataclass_fields__
        return cls(**{key: float(value) for key, value in values.items() if key in fields})

    def sentence_score(self, reader_score: float, cosine: float, chunk_rank: int) -> float:
        """A candidate sentence's score from the reader's, its cosine similarity to the
        question and its chunk's place among the retrieved ones."""
        return (
            self.rank_reader_weight * reader_score
            + self.rank_cosine_weight * cosine
            + self.rank_chunk_weight * chunk_rank
            + self.rank_bias
        )

    def selection_score(
        self, cosine: float, overlap: float, chunk_rank: int, characters: int
    ) -> float:
        """How worth reading a retrieved sentence is, before the reader reads it: a logistic
        regression's logit of "it holds the answer" on its cosine similarity to the question,
        the share of the question's terms it holds (``rag.answer.selection.term_overlaps``),
        its chunk's place and its length (log characters)."""
        return (
            self.select_cosine_weight * cosine
            + self.select_overlap_weight * overlap
            + self.select_chunk_weight * chunk_rank
            + self.select_length_weight * math.log1p(characters)
        )

    def answerability(self, context_score: float, best_cosine: float) -> float:
        """The answer/refuse logit for a question."""
        return (
            self.answer_reader_weight * context_score
            + self.answer_dense_weight * best_cosine
            + self.answer_bias
        )


@dataclass(frozen=True)
class ReaderScore:
    """How well a sentence answers (best span logit sum minus the no-answer one) and that span
    (char offsets in the sentence)."""

    score: float
    start: int
    end: int


class Reader:
    """Loads the reader once; ``score`` is thread-safe."""

    def __init__(
        self, folder: Path | str = READER_DIR, threads: int | None = None, backend: str = "onnx"
    ):
        """``backend``: "onnx" (ONNX Runtime, fp32: the same scores the thresholds were
        calibrated on, without importing torch), "openvino" (bf16 products where the CPU has
        bf16 units: scores within the calibration's tolerances), "onnx-int8" or "torch"."""
        self.folder = Path(folder)
        self.threads = threads
        self.backend = backend
        self._model = None
        self._onnx = None
        self._tokenizer = None
        self._calibration: Calibration | None = None
        self._lock = threading.Lock()

    @property
    def needs_export(self) -> bool:
        """Whether loading would first export the model to ONNX (with torch)."""
        from rag.onnx_encoders import is_exported

        return self.backend != "torch" and not is_exported(self.folder, "reader", self.backend)

    def _load(self) -> None:
        if self._model is not None or self._onnx is not None:
            return
        with self._lock:
            if self._model is not None or self._onnx is not None:
                return
            weights = self.folder / "model.safetensors"
            if not weights.is_file() or not (self.folder / "config.json").is_file():
                raise ReaderError(f"the reader model is missing from {self.folder}: {RESTORE_HINT}")
            if self.backend != "torch":
                from rag.onnx_encoders import OnnxEncoder, exported

                try:
                    model = exported(self.folder, "reader", self.backend)
                    self._onnx = OnnxEncoder(model, self.backend, self.max_length, self.threads)
                except RagError as error:
                    raise ReaderError(
                        f"the reader model in {self.folder} cannot be loaded ({error}): "
                        f"{RESTORE_HINT}"
                    ) from None
                return
            try:
                import torch
                from transformers import AutoTokenizer, BertForQuestionAnswering

                if self.threads:
                    torch.set_num_threads(self.threads)
                tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
                model = BertForQuestionAnswering.from_pretrained(
                    self.folder, local_files_only=True, torch_dtype=torch.float32
                )
            except Exception as error:
                raise ReaderError(
                    f"the reader model in {self.folder} cannot be loaded "
                    f"({type(error).__name__}: {str(error)[:160]}): {RESTORE_HINT}"
                ) from None
            model.eval()
            self._tokenizer = tokenizer
            self._model = model

    @property
    def calibration(self) -> Calibration:
        """The thresholds calibrated for this model (reader.json ``calibration``)."""
        if self._calibration is None:
            self._calibration = Calibration.from_values(self.info().get("calibration", {}))
        return self._calibration

    @functools.cached_property
    def reads_passages(self) -> bool:
        """Whether the model was trained to read whole passages (``score_passages``) rather
        than one sentence at a time (``score``): reader.json ``input``."""
        return self.info().get("input") == "passage"

    @property
    def max_length(self) -> int:
        """Tokens per input; longer ones are truncated."""
        return PASSAGE_MAX_LENGTH if self.reads_passages else MAX_LENGTH

    def info(self) -> dict:
        """The model card's machine-readable part (training data, held-out figures)."""
        path = self.folder / "reader.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def score(
        self, question: str, candidates: list[tuple[str, str]], batch_size: int = BATCH_SIZE
    ) -> list[ReaderScore]:
        """Score each (title, sentence) candidate for ``question``.

        Candidates run in batches of similar length (sorted by characters), so a short
        sentence is not padded to the longest one: the scores are the same as one batch's,
        the work is what the real tokens need."""
        if not candidates:
            return []
        self._load()
        texts, offsets = zip(*(reader_text(t, s) for t, s in candidates), strict=True)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        scores: list[ReaderScore | None] = [None] * len(texts)
        for begin in range(0, len(order), batch_size):
            members = order[begin : begin + batch_size]
            starts, ends, mappings, sequence_ids = self._logits(
                question, [texts[i] for i in members]
            )
            for row, i in enumerate(members):
                scores[i] = _best_span(
                    starts[row], ends[row], mappings[row], sequence_ids[row], offsets[i]
                )
        return scores  # type: ignore[return-value]  # every slot filled above

    def score_passages(
        self,
        question: str,
        passages: list[tuple[str, str, list[tuple[int, int]]]],
        batch_size: int = 2,
    ) -> list[list[ReaderScore]]:
        """For each (title, passage, spans): per char span of the passage (its sentences), the
        best answer span inside it against no answer, from one read of the whole passage.
        A span cut off by truncation scores -1e4."""
        if not passages:
            return []
        self._load()
        texts, offsets = zip(*(reader_text(t, p) for t, p, _ in passages), strict=True)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        scores: list[list[ReaderScore]] = [[] for _ in passages]
        for begin in range(0, len(order), batch_size):
            members = order[begin : begin + batch_size]
            starts, ends, mappings, sequence_ids = self._logits(
                question, [texts[i] for i in members]
            )
            for row, i in enumerate(members):
                scores[i] = [
                    _best_span(
                        starts[row],
                        ends[row],
                        mappings[row],
                        sequence_ids[row],
                        offsets[i] + a,
                        offsets[i] + b,
                    )
                    for a, b in passages[i][2]
                ]
        return scores

    def _logits(self, question: str, batch: list[str]) -> tuple[Any, Any, list, list]:
        """Start and end logits for (question, text) pairs, with each token's character offsets
        and segment ids."""
        if self._onnx is not None:
            arrays, encodings = self._onnx.encode_batch([(question, text) for text in batch])
            starts, ends = self._onnx.run(arrays)
            mappings = [np.array(encoding.offsets) for encoding in encodings]
            return starts, ends, mappings, [encoding.sequence_ids for encoding in encodings]
        import torch

        encoded = self._tokenizer(
            [question] * len(batch),
            batch,
            truncation="longest_first",
            max_length=self.max_length,
            padding=True,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        mappings = list(encoded.pop("offset_mapping").numpy())
        sequence_ids = [encoded.sequence_ids(i) for i in range(len(batch))]
        with torch.inference_mode():
            output = self._model(**encoded)
        return (
            output.start_logits.float().numpy(),
            output.end_logits.float().numpy(),
            mappings,
            sequence_ids,
        )


@functools.cache
def _span_band(n: int) -> np.ndarray:
    """Which (start, end) token pairs form a span: start <= end < start + MAX_ANSWER_TOKENS."""
    ones = np.ones((n, n), dtype=bool)
    return np.triu(ones) & ~np.triu(ones, k=MAX_ANSWER_TOKENS)


def _best_span(
    starts: np.ndarray,
    ends: np.ndarray,
    mapping: np.ndarray,
    sequence_ids: list[int | None],
    sentence_offset: int,
    sentence_end: float = float("inf"),
) -> ReaderScore:
    """The best span inside the sentence part of the second segment (from char
    ``sentence_offset`` up to ``sentence_end``), against [CLS]."""
    null = float(starts[0] + ends[0])
    allowed = np.array(
        [
            sid == 1 and mapping[t][0] >= sentence_offset and mapping[t][1] <= sentence_end
            for t, sid in enumerate(sequence_ids)
        ]
    )
    if not allowed.any():
        return ReaderScore(NO_ROOM, 0, 0)
    s = np.where(allowed, starts, -1e9)
    e = np.where(allowed, ends, -1e9)
    # Sum of start i and end j with i <= j < i + MAX_ANSWER_TOKENS.
    table = np.where(_span_band(len(s)), s[:, None] + e[None, :], -1e9)
    i, j = np.unravel_index(int(np.argmax(table)), table.shape)
    return ReaderScore(
        float(table[i, j]) - null,
        int(mapping[i][0]) - sentence_offset,
        int(mapping[j][1]) - sentence_offset,
    )


_SHARED: dict[str, Reader] = {}
_SHARED_LOCK = threading.Lock()


def reader_backend_for(encoder_backend: str) -> str:
    """The reader's backend under RAG_ENCODER_BACKEND: never int8 (its thresholds hold for
    fp32 scores), otherwise the same runtime as the embeddings."""
    from rag.onnx_encoders import resolve_backend

    backend = resolve_backend(encoder_backend)
    return {"onnx-int8": "onnx", "openvino-int8": "openvino"}.get(backend, backend)


def get_reader(folder: Path | str = READER_DIR, backend: str = "onnx") -> Reader:
    """One reader per model folder and backend per process."""
    key = f"{Path(folder).resolve()}|{backend}"
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Reader(folder, backend=backend)
        return _SHARED[key]
