"""The shipped question sets (evals/*.yaml) are valid and consistent with their corpora.

For every set: it loads; every `evidence` alternative occurs verbatim (whitespace- and
case-normalised, as `rag eval` matches it) in the text the product's loaders extract from the
named `source` (or, for an item without a source, from some file of the corpus), inside one
chunk as ingest cuts it; and every `expected` group of an answerable item has an alternative
that occurs in that text, unless the item is listed in PARAPHRASED (its answer is legitimately
worded differently from the documents; such items carry a comment in the YAML).

The handbook corpus (evals/corpora/handbook/) is also checked for what it is meant to exercise:
several formats, documents of 300-1200 words, a multi-page PDF, no <script>/<style> text, and
committed .docx/.pdf files that match what evals/corpora/make_handbook.py generates.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

import pytest

from rag.chunking import chunk_document
from rag.config import Settings
from rag.evaluation import EvalItem, QuestionSet, contains_evidence, load_question_set, normalise
from rag.loaders import LoadedDocument, load_file

ROOT = Path(__file__).resolve().parent.parent
HANDBOOK = ROOT / "evals" / "corpora" / "handbook"
READMES = ROOT / "evals" / "corpora" / "readmes"
READMES_RST = ROOT / "evals" / "corpora" / "readmes-rst"

# question set -> the folder its documents come from
SETS: dict[str, Path] = {
    "seed.yaml": ROOT / "seeds",
    "handbook.yaml": HANDBOOK,
    "readmes-validation.yaml": READMES / "validation",
    "readmes-test.yaml": READMES / "test",
    "readmes-followups-validation.yaml": READMES / "validation",
    "readmes-paraphrase-validation.yaml": READMES / "validation",
    "readmes-paraphrase-test.yaml": READMES / "test",
    "readmes-rst-validation.yaml": READMES_RST / "validation",
    "readmes-rst-test.yaml": READMES_RST / "test",
}
# Sets that also hold conversations (follow-up questions); the README sets are single questions.
WITH_CONVERSATIONS = {"seed.yaml", "handbook.yaml", "readmes-followups-validation.yaml"}

# Answerable items whose expected answer is a paraphrase, not text of the source (by set).
PARAPHRASED: dict[str, set[str]] = {name: set() for name in SETS}


@cache
def _question_set(name: str) -> QuestionSet:
    return load_question_set(ROOT / "evals" / name)


@cache
def _document(path: Path) -> LoadedDocument:
    return load_file(path)


def _corpus_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _texts_for(name: str, item: EvalItem) -> dict[str, LoadedDocument]:
    """The documents an item's evidence and answer must come from: its source, or all."""
    folder = SETS[name]
    if item.case.source:
        path = folder / item.case.source
        assert path.is_file(), f"{name} {item.id}: source {item.case.source!r} not in {folder}"
        return {path.name: _document(path)}
    return {path.name: _document(path) for path in _corpus_files(folder)}


def _occurs(haystack: str, needle: str) -> bool:
    """Normalised substring that starts at a word boundary (as `rag eval` matches answers)."""
    text, wanted = normalise(haystack), normalise(needle)
    start = r"(?<![^\W_])" if wanted[:1].isalnum() else ""
    return re.search(start + re.escape(wanted), text) is not None


def _items(name: str) -> list[EvalItem]:
    return _question_set(name).items()


def _params(kind: str) -> list[object]:
    params = []
    for name in SETS:
        for item in _items(name):
            if kind == "evidence" and item.case.evidence:
                params.append(pytest.param(name, item.id, id=f"{name}:{item.id}"))
            if kind == "expected" and item.case.answerable and item.case.expected:
                params.append(pytest.param(name, item.id, id=f"{name}:{item.id}"))
    return params


def _item(name: str, item_id: str) -> EvalItem:
    return next(item for item in _items(name) if item.id == item_id)


@pytest.mark.parametrize("name", list(SETS))
def test_question_set_is_valid(name: str) -> None:
    question_set = _question_set(name)
    items = question_set.items()
    answerable = [item for item in items if item.case.answerable]
    assert answerable and len(answerable) < len(items), "needs answerable and unanswerable items"
    if name in WITH_CONVERSATIONS:
        assert question_set.conversations, "needs at least one conversation"
    for item in answerable:
        assert item.case.expected, f"{item.id}: answerable item without 'expected'"
        assert item.case.evidence, f"{item.id}: answerable item without 'evidence'"
    names = {path.name for path in _corpus_files(SETS[name])}
    for item in items:
        if item.case.source:
            assert item.case.source in names, f"{item.id}: unknown source {item.case.source!r}"
    for excluded in PARAPHRASED[name]:
        assert any(item.id == excluded for item in answerable), f"stale PARAPHRASED id {excluded}"


def test_handbook_set_has_the_intended_mix() -> None:
    question_set = _question_set("handbook.yaml")
    questions = question_set.questions
    assert sum(q.answerable for q in questions) >= 30
    assert sum(not q.answerable for q in questions) >= 12
    assert len(question_set.conversations) >= 4
    assert all(len(c.turns) >= 2 for c in question_set.conversations)
    sources = {item.case.source for item in question_set.items() if item.case.source}
    assert sources == {path.name for path in _corpus_files(HANDBOOK)}, "every document is used"


@pytest.mark.parametrize(("name", "item_id"), _params("evidence"))
def test_evidence_is_verbatim_in_the_extracted_source(name: str, item_id: str) -> None:
    item = _item(name, item_id)
    documents = _texts_for(name, item)
    settings = Settings()
    for evidence in item.case.evidence or []:
        holders = [n for n, doc in documents.items() if contains_evidence(doc.text, [evidence])]
        assert holders, f"{name} {item_id}: evidence {evidence!r} not in {sorted(documents)}"
        # `rag eval` looks for evidence inside one chunk: it must not straddle a chunk boundary.
        in_a_chunk = any(
            contains_evidence(chunk.text, [evidence])
            for holder in holders
            for chunk in chunk_document(
                documents[holder], holder, holder, settings.chunk_size, settings.chunk_overlap
            )
        )
        assert in_a_chunk, f"{name} {item_id}: evidence {evidence!r} spans a chunk boundary"


@pytest.mark.parametrize(("name", "item_id"), _params("expected"))
def test_expected_answer_occurs_in_the_source(name: str, item_id: str) -> None:
    if item_id in PARAPHRASED[name]:
        pytest.skip("expected answer is a paraphrase (marked in the YAML)")
    item = _item(name, item_id)
    documents = _texts_for(name, item)
    for group in item.case.expected or []:
        assert any(_occurs(doc.text, alt) for doc in documents.values() for alt in group), (
            f"{name} {item_id}: no alternative of {group} occurs in {sorted(documents)}"
        )


# The handbook corpus itself ----------------------------------------------------------------


def test_handbook_corpus_formats_and_sizes() -> None:
    files = _corpus_files(HANDBOOK)
    assert 5 <= len(files) <= 6
    assert {".md", ".html", ".txt", ".docx", ".pdf"} <= {path.suffix for path in files}
    for path in files:
        words = len(_document(path).text.split())
        assert 300 <= words <= 1200, f"{path.name}: {words} words"
        if path.suffix in (".docx", ".pdf"):
            assert path.stat().st_size < 100_000, f"{path.name} is too big to commit"
    assert len(_document(HANDBOOK / "safety_procedures.pdf").pages) >= 3


def test_handbook_html_script_and_style_are_not_extracted() -> None:
    document = _document(HANDBOOK / "timetable_and_fares.html")
    raw = (HANDBOOK / "timetable_and_fares.html").read_text(encoding="utf-8")
    assert "<script>" in raw and "<style>" in raw
    assert document.title == "Timetables and Fares 2024 | Merrow Sound Ferries"
    for leaked in ("promoFare", "Summerholm £5.00", "£9.99", "font-family", "bookingConfig"):
        assert leaked not in document.text


def test_committed_binaries_match_the_generator(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_handbook", ROOT / "evals" / "corpora" / "make_handbook.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_docx(tmp_path / "onboarding_programme.docx")
    module.make_pdf(tmp_path / "safety_procedures.pdf")
    for name in ("onboarding_programme.docx", "safety_procedures.pdf"):
        fresh, committed = load_file(tmp_path / name), _document(HANDBOOK / name)
        assert fresh.text == committed.text, f"{name}: re-run evals/corpora/make_handbook.py"
        assert fresh.title == committed.title


def test_readme_sets_have_the_intended_mix() -> None:
    """Both README splits: how-to and prose questions, near misses, every README asked about,
    and no package in both splits; every README's licence is shipped beside it."""
    validation, test = (set(_corpus_files(READMES / split)) for split in ("validation", "test"))
    assert {p.name for p in validation}.isdisjoint({p.name for p in test})
    for name, folder in (("readmes-validation.yaml", "validation"), ("readmes-test.yaml", "test")):
        items = _items(name)
        kinds = [item.case.note for item in items if item.case.answerable]
        assert kinds.count("how-to") >= 25 and kinds.count("prose") >= 25
        assert sum(not item.case.answerable for item in items) >= 10
        sources = {item.case.source for item in items if item.case.source}
        assert sources == {p.name for p in _corpus_files(READMES / folder)}
        for source in sources:
            assert (READMES / "LICENSES" / source.replace(".md", ".txt")).is_file(), source


def test_restructuredtext_readme_sets_have_the_intended_mix() -> None:
    """Both reStructuredText README splits: how-to and prose questions, near misses, every
    README asked about, no package in both splits, every README's licence shipped beside it."""
    validation, test = (set(_corpus_files(READMES_RST / split)) for split in ("validation", "test"))
    assert {p.name for p in validation}.isdisjoint({p.name for p in test})
    for name, folder in (
        ("readmes-rst-validation.yaml", "validation"),
        ("readmes-rst-test.yaml", "test"),
    ):
        items = _items(name)
        kinds = [item.case.note for item in items if item.case.answerable]
        assert kinds.count("how-to") >= 14 and kinds.count("prose") >= 14
        assert sum(not item.case.answerable for item in items) >= 7
        sources = {item.case.source for item in items if item.case.source}
        assert sources == {p.name for p in _corpus_files(READMES_RST / folder)}
        for source in sources:
            assert (READMES_RST / "LICENSES" / source.replace(".rst", ".txt")).is_file(), source
