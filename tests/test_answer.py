"""Answering: refusal, marker validation, sentence attribution, follow-ups, streaming and bad
questions. A scripted LangChain chat model stands in for the LLM where the test is about wiring;
the real default LLM runs end to end in test_local_llm_end_to_end."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from rag.answer import (
    RAG,
    Answer,
    Candidate,
    QuestionError,
    Support,
    clean_question,
    compose_answer,
    condense_heuristic,
    direct_answer,
    is_follow_up,
    new_words,
    split_answer,
)
from rag.answer.reading import (
    EXTRA_CANDIDATES_LIMIT,
    MAX_READER_CANDIDATES,
    READER_CHARS_BUDGET,
    within_budget,
)
from rag.config import Settings
from rag.evaluation import count_sentences
from rag.ingest import ingest
from rag.reader import with_context
from rag.retrieval import RetrievedChunk
from tests.conftest import SEED_FILE, write_doctest_readme

SEED_TEXT = SEED_FILE.read_text(encoding="utf-8")
SHARE_QUESTION = "What share of Russia's microelectronics came from China in 2023?"


def scripted(*replies: str) -> GenericFakeChatModel:
    """A chat model that streams the given replies, one per call, word by word."""
    return GenericFakeChatModel(messages=iter(AIMessage(content=reply) for reply in replies))


@pytest.fixture(scope="module")
def bot(seed_index: Settings) -> RAG:
    return RAG(seed_index)


def assert_citations_exact(answer: Answer) -> None:
    """Every citation quotes the source exactly at its offsets, and every [n] resolves."""
    numbers = {citation.n for citation in answer.citations}
    for citation in answer.citations:
        assert SEED_TEXT[citation.start : citation.end] == citation.quote
        assert citation.source == "china_russia_military_supply.txt"
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    assert markers == numbers


def test_extractive_answer_is_cited_exactly(bot: RAG) -> None:
    answer = bot.ask(SHARE_QUESTION)
    assert not answer.refused
    assert "90%" in answer.answer
    assert answer.citations and "90%" in answer.citations[0].quote
    assert_citations_exact(answer)
    assert answer.llm == "extractive"
    assert answer.retrieved and answer.retrieved[0].text
    assert answer.timings.total_s >= answer.timings.retrieve_s > 0


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "How do I bake sourdough bread at home?"],
)
def test_off_topic_questions_are_refused_without_llm(seed_index: Settings, question: str) -> None:
    never_called = scripted()  # raises if the pipeline asks it for anything
    answer = RAG(seed_index, chat_model=never_called).ask(question)
    assert answer.refused
    assert answer.citations == []
    assert answer.answer.startswith("The documents don't say")


def test_question_about_unmentioned_person_is_refused(bot: RAG) -> None:
    """An on-topic near miss about someone the article never names (answered with the closest
    sentence until answer/refuse read the top sentences after the sentence before them)."""
    answer = bot.ask("What did Vladimir Putin say about the Chinese supplies?")
    assert answer.refused
    assert answer.citations == []


def test_invalid_markers_removed_and_unsupported_sentences_dropped(seed_index: Settings) -> None:
    draft = (
        "About 90% of Russia's microelectronics came from China in 2023 [7]. "
        "The moon is made of green cheese [1]."
    )
    answer = RAG(seed_index, chat_model=scripted(draft)).ask(SHARE_QUESTION)
    assert not answer.refused
    assert "cheese" not in answer.answer
    assert "[7]" not in answer.answer
    assert "90%" in answer.answer
    assert answer.answer.count("[") == 1
    assert_citations_exact(answer)
    assert "90%" in answer.citations[0].quote
    assert answer.draft == draft


def test_sentence_with_a_wrong_number_is_not_kept(seed_index: Settings) -> None:
    draft = "China supplied about 45% of Russia's microelectronics in 2023 [1]."
    answer = RAG(seed_index, chat_model=scripted(draft)).ask(SHARE_QUESTION)
    assert "45%" not in answer.answer
    assert "90%" in answer.answer  # the verified fallback quotes the document
    assert_citations_exact(answer)


def test_each_sentence_is_attributed_to_its_own_support(seed_index: Settings) -> None:
    draft = (
        "Around 90% of Russia's microelectronics were sourced from China in 2023 [2]. "
        "Nearly 70% of Russia's machine tool imports came from China late in 2023 [1]."
    )
    answer = RAG(seed_index, chat_model=scripted(draft)).ask(
        "What did Russia get from China in 2023, microelectronics and machine tools?"
    )
    assert not answer.refused
    assert len(answer.citations) == 2
    quotes = [citation.quote for citation in answer.citations]
    assert "90%" in quotes[0] and "70%" in quotes[1]
    assert answer.answer.index("[1]") < answer.answer.index("[2]")
    assert_citations_exact(answer)


def test_new_words_catch_question_words_welded_onto_a_fact() -> None:
    """The tiny local model's typical slip: the question's words attached to another fact."""
    text = (
        "China has been identified as a key supplier of military optics, UAV engines and "
        "turbojet engines for cruise missiles to Russia. Satellites matter too."
    )
    chunk = RetrievedChunk("c1", text, {"source": "a.txt", "start": 100}, 1.0)
    end = text.index(" Satellites")
    support = Support(0, chunk.start, chunk.start + end, 0.9)
    welded = "China is a key supplier of UAV engines to Russia's space programme."
    assert new_words(welded, support, [chunk]) == {"space", "programm"}
    faithful = "China is a key supplier of military optics and UAV engines to Russia."
    assert new_words(faithful, support, [chunk]) == set()


def test_quoted_list_cites_every_sentence_once(tmp_path, settings: Settings) -> None:
    """A lead-in quoted with its list carries a marker after each sentence, and a list item
    from an overlapping chunk is not quoted a second time."""
    items = "\n".join(
        f"- Rule {n}: every crew member must log {word} hours before the shift ends."
        for n, word in enumerate(["rest", "watch", "training", "galley", "deck"], start=1)
    )
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "rules.md").write_text(
        "# Crew rules\n\nThe ferry line keeps strict logs.\n\nRules for sea staff:\n"
        f"{items}\n\nOther matters are handled by the office.\n",
        encoding="utf-8",
    )
    small = settings.with_overrides(chunk_size=300, chunk_overlap=120)
    assert ingest([tmp_path / "docs"], small).ok
    answer = RAG(small).ask("What are the rules for sea staff about logging hours?")
    assert not answer.refused
    sentences, uncited = count_sentences(answer)
    assert sentences >= 2 and uncited == 0
    for word in ["rest", "watch", "training", "galley", "deck"]:
        assert answer.answer.count(f"log {word} hours") <= 1, answer.answer


def test_model_that_says_it_does_not_know_is_believed(seed_index: Settings) -> None:
    answer = RAG(seed_index, chat_model=scripted("I don't know.")).ask(
        "How many drones did China deliver to Russia in total?"
    )
    assert answer.refused and answer.citations == []


def test_streaming_shows_only_checked_sentences(seed_index: Settings) -> None:
    draft = "About 90% of Russia's microelectronics came from China in 2023 [1]. Cheese moon [1]."
    events = list(RAG(seed_index, chat_model=scripted(draft)).stream(SHARE_QUESTION))
    kinds = [event.kind for event in events]
    assert kinds[0] == "stage" and "writing" in [e.text for e in events if e.kind == "stage"]
    assert "token" not in kinds, "an unchecked draft must not be streamed by default"
    assert kinds.count("final") == 1 and kinds[-1] == "final"
    final = events[-1].answer
    assert final is not None and final.mode == "generated"
    shown = "".join(event.text for event in events if event.kind == "sentence")
    assert shown == final.answer and "90%" in shown and "Cheese" not in shown
    # The first sentence was checked and streamed before the draft's second one was judged.
    assert kinds.index("sentence") < kinds.index("final")


def test_raw_draft_is_streamed_only_when_asked_for(seed_index: Settings) -> None:
    draft = "About 90% of Russia's microelectronics came from China in 2023 [1]. Cheese moon [1]."
    bot = RAG(seed_index, chat_model=scripted(draft))
    events = list(bot.stream(SHARE_QUESTION, drafts=True))
    tokens = [event.text for event in events if event.kind == "token"]
    assert len(tokens) > 5 and "".join(tokens) == draft
    assert "Cheese" not in events[-1].answer.answer


def test_every_streamed_state_is_a_prefix_of_the_final_answer(bot: RAG) -> None:
    for question in (SHARE_QUESTION, "Which Chinese companies provide optics for Russian tanks?"):
        shown = ""
        for event in bot.stream(question):
            if event.kind == "sentence":
                shown += event.text
            elif event.kind == "final":
                assert event.answer is not None and event.answer.answer.startswith(shown)
                assert shown == event.answer.answer


def test_chain_is_a_langchain_runnable(seed_index: Settings) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from langchain_core.callbacks import BaseCallbackHandler

    reply = "China supplied 90% of them [1]."
    chain = RAG(seed_index, chat_model=scripted(*[reply] * 8)).chain()

    answer = chain.invoke({"question": SHARE_QUESTION})
    assert isinstance(answer, Answer) and "90%" in answer.answer and answer.citations

    answers = chain.batch(
        [{"question": SHARE_QUESTION}, {"question": "Who won the 2022 World Cup?"}]
    )
    assert [type(a) for a in answers] == [Answer, Answer]
    assert not answers[0].refused and answers[1].refused

    events = list(chain.stream({"question": SHARE_QUESTION}))
    assert events[-1].kind == "final" and "90%" in events[-1].answer.answer

    async def collect() -> tuple[list, list]:
        streamed = [event async for event in chain.astream({"question": SHARE_QUESTION})]
        runs = [
            (event["event"], event["name"])
            async for event in chain.astream_events({"question": SHARE_QUESTION}, version="v2")
        ]
        return streamed, runs

    # In a thread of its own: the test runner's thread may already hold an event loop.
    with ThreadPoolExecutor(1) as pool:
        streamed, runs = pool.submit(asyncio.run, collect()).result()
    assert streamed[-1].kind == "final" and "90%" in streamed[-1].answer.answer
    assert any(kind == "on_retriever_end" for kind, _ in runs), runs
    assert any(kind == "on_chat_model_stream" for kind, _ in runs), runs
    assert ("on_chain_stream", "check") in runs

    class Runs(BaseCallbackHandler):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_retriever_start(self, serialized, query, **kwargs) -> None:
            self.seen.append("retriever")

        def on_chat_model_start(self, serialized, messages, **kwargs) -> None:
            self.seen.append("chat_model")

    tracer = Runs()
    chain.invoke({"question": SHARE_QUESTION}, config={"callbacks": [tracer]})
    assert tracer.seen == ["retriever", "chat_model"]


def test_retriever_prompt_and_model_can_be_swapped(seed_index: Settings) -> None:
    from langchain_core.documents import Document
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.retrievers import BaseRetriever

    text = "The Zorblax reactor produces 42 megawatts of power."

    class OneDocument(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
            return [Document(page_content=text, metadata={"source": "zorblax.txt"})]

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from these sources only:\n{context}"), ("human", "{question}")]
    )
    model = scripted("The Zorblax reactor produces 42 megawatts [1].")
    bot = RAG(seed_index, chat_model=model, retriever=OneDocument(), prompt=prompt)
    answer = bot.ask("How much power does the Zorblax reactor produce?")
    assert not answer.refused and "42 megawatts" in answer.answer
    assert answer.citations[0].source == "zorblax.txt"
    assert text[answer.citations[0].start : answer.citations[0].end] == answer.citations[0].quote


def test_follow_up_is_condensed_and_recorded(bot: RAG) -> None:
    history = [(SHARE_QUESTION, "About 90% [1].")]
    answer = bot.ask("And what about machine tools?", history=history)
    assert answer.question == "And what about machine tools?"
    assert SHARE_QUESTION in answer.standalone_question
    assert "machine tool" in answer.answer
    assert_citations_exact(answer)


def test_follow_up_with_message_history(bot: RAG) -> None:
    history = [
        {"role": "user", "content": "Which Chinese firms supply optics for Russian tanks?"},
        {"role": "assistant", "content": "Wuhan Global Sensor Technology Co. and others [1]."},
    ]
    answer = bot.ask("What else do they supply?", history=history)
    assert "optics" in answer.standalone_question


def test_condense_heuristic() -> None:
    history = [("Who makes the optics?", "Hikvision [1].")]
    assert condense_heuristic("Who makes the optics?", []) == "Who makes the optics?"
    assert condense_heuristic("And their engines?", history).startswith("Who makes the optics?")
    standalone = "Which share of Russia's machine tool imports came from China in late 2023?"
    assert condense_heuristic(standalone, history) == standalone
    refused = [("Who won the 2022 World Cup?", "The documents don't say: ..."), *history]
    refused.append(("Who won the 2022 World Cup?", "The documents don't say: ..."))
    assert condense_heuristic("And their engines?", refused).startswith("Who makes the optics?")
    assert is_follow_up("Why?") and is_follow_up("What about them?")
    assert not is_follow_up("Which companies supply optical components for Russian tanks?")


def test_split_answer_markers() -> None:
    pieces = split_answer("First claim [1]. Second claim [2, 3]. Third. [4]")
    assert pieces == [("First claim.", [1]), ("Second claim.", [2, 3]), ("Third.", [4])]


@pytest.mark.parametrize("question", ["", "   ", "\n\t", "?!...", "\x00\x01"])
def test_bad_questions_raise_clear_errors(bot: RAG, question: str) -> None:
    with pytest.raises(QuestionError, match="question"):
        bot.ask(question)


def test_very_long_question_is_truncated_not_crashing(bot: RAG) -> None:
    question = ("What share of Russia's microelectronics came from China? " * 400)[:20_000]
    answer = bot.ask(question)
    assert len(answer.question) <= bot.settings.max_question_chars
    assert isinstance(answer.refused, bool)


def test_control_characters_are_removed() -> None:
    assert clean_question("What\x00 is\x1b[31m this?\r\n", 100) == "What is this?"
    assert clean_question("\x1b]0;title\x07Why?", 100) == "Why?"


def test_answer_json_contract(bot: RAG) -> None:
    data = bot.ask(SHARE_QUESTION).to_dict()
    assert set(data) == {
        "question", "standalone_question", "answer", "refused", "citations", "retrieved",
        "llm", "timings",
    }  # fmt: skip
    assert set(data["citations"][0]) == {
        "n", "source", "chunk_id", "page", "start", "end", "quote", "section"
    }  # fmt: skip
    assert set(data["retrieved"][0]) == {"chunk_id", "source", "score", "text"}
    assert set(data["timings"]) == {"load_s", "retrieve_s", "generate_s", "total_s"}


@pytest.mark.slow
def test_local_llm_end_to_end(seed_index: Settings) -> None:
    """The real default LLM (SmolLM2 via llama.cpp) answers with verified citations."""
    bot = RAG(seed_index.with_overrides(llm="local"))
    events: Iterator = bot.stream(
        "Which Chinese companies provide optics for Russian tanks?", drafts=True
    )
    events = list(events)
    final = events[-1].answer
    assert final is not None and final.llm == "local"
    assert any(event.kind == "token" for event in events), "the local model streamed nothing"
    shown = "".join(event.text for event in events if event.kind == "sentence")
    assert shown == final.answer
    assert not final.refused
    assert "Hikvision" in final.answer or "Wuhan" in final.answer
    assert_citations_exact(final)
    refused = bot.ask("What is the capital of France?")
    assert refused.refused
    invoked = bot.chain().invoke({"question": "Which Chinese companies provide optics?"})
    assert isinstance(invoked, Answer) and invoked.llm == "local" and not invoked.refused
    assert_citations_exact(invoked)


def test_direct_answer_leads_the_quote() -> None:
    text = "The first web browser was invented in 1990 by Sir Tim Berners-Lee."
    chunk = RetrievedChunk(
        "c1", text, {"source": "web.md", "start": 100, "title": "Web browser"}, score=1.0
    )
    start = text.index("1990")
    best = Candidate(5.0, 0, 0, len(text), start, start + 4)
    direct = direct_answer(best, [chunk])
    assert direct == "1990"
    kept = [(text, Support(0, 100, 100 + len(text), 5.0))]
    body, citations = compose_answer(kept, [chunk], direct)
    assert body == f"1990 — {text} [1]"
    assert citations[0].quote == text and citations[0].start == 100
    whole = Candidate(5.0, 0, 0, len(text), 0, len(text) - 1)
    assert direct_answer(whole, [chunk]) == ""  # most of the sentence: no lead
    row = "| Saturday | 10:00 | 14:00 | closed for lunch 12:00-12:30 |"
    cells = RetrievedChunk("c2", row, {"source": "hours.md", "start": 0, "title": "Hours"}, 1.0)
    across = Candidate(5.0, 0, 0, len(row), row.index("10:00"), row.index("14:00") + 5)
    assert direct_answer(across, [cells]) == ""  # which of two cells answers is not known
    one = Candidate(5.0, 0, 0, len(row), row.index("14:00"), row.index("14:00") + 5)
    assert direct_answer(one, [cells]) == "14:00"


@pytest.mark.parametrize(
    ("sentence", "cut", "expected"),
    [
        # A short answer cut through inline code or markdown emphasis is shown whole or bare.
        (
            "`orjson.dumps()` returns bytes where json.dumps returns a `str` value.",
            "a `str",
            "a `str`",
        ),
        (
            "It follows the __[CommonMark spec](https://spec.commonmark.org/)__ closely.",
            "__[CommonMark spec",
            "CommonMark spec",
        ),
        (
            "Call `truststore.inject_into_ssl()` once at the start of the program.",
            "inject_into_ssl",
            "`truststore.inject_into_ssl()`",
        ),
        (
            "The `__init__` hook of plugins runs first of all the hooks here.",
            "`__init__`",
            "`__init__`",
        ),
    ],
)
def test_direct_answer_keeps_markup_whole(sentence: str, cut: str, expected: str) -> None:
    chunk = RetrievedChunk("c1", sentence, {"source": "r.md", "start": 0, "title": "R"}, 1.0)
    start = sentence.index(cut)
    best = Candidate(5.0, 0, 0, len(sentence), start, start + len(cut))
    assert direct_answer(best, [chunk]) == expected


def test_refusals_do_not_depend_on_unrelated_documents(tmp_path, seed_index: Settings) -> None:
    """Indexing an unrelated document (a bakery's opening hours) changes no seed decision."""
    from rag.evaluation import load_question_set

    bakery = tmp_path / "docs" / "bakery.md"
    bakery.parent.mkdir()
    bakery.write_text(
        "# Crumb & Co. bakery\n\nWe are open Monday to Friday from 7:00 to 18:00, on Saturday "
        "from 8:00 to 14:00 and closed on Sunday. Sourdough loaves cost 4.50 euros.\n",
        encoding="utf-8",
    )
    both = load_settings_like(seed_index, tmp_path / "index")
    ingest([SEED_FILE.parent, bakery.parent], both)
    alone, mixed = RAG(seed_index), RAG(both)
    questions = load_question_set(SEED_FILE.parents[1] / "evals" / "seed.yaml").questions
    changed = [
        q.id for q in questions if alone.ask(q.question).refused != mixed.ask(q.question).refused
    ]
    assert changed == []


def load_settings_like(settings: Settings, index_dir) -> Settings:
    return settings.model_copy(update={"index_dir": index_dir})


def write_browser_docs(folder) -> None:
    """One short Markdown page whose second sentence answers only after the first: "He"."""
    folder.mkdir()
    (folder / "browser.md").write_text(
        "# Web browser\n\nTim Berners-Lee wrote the first web browser, WorldWideWeb, at CERN. "
        "He finished it in December 1990. Browsers later spread to home computers, and "
        "Netscape Navigator was the most popular browser of the mid-1990s.\n",
        encoding="utf-8",
    )


def test_answer_decision_reads_the_sentence_before(tmp_path, settings: Settings) -> None:
    """Whether the documents answer is judged on the top sentences read after the sentence
    before them: "He finished it in December 1990." answers for Berners-Lee only in context."""
    write_browser_docs(tmp_path / "docs")
    assert ingest([tmp_path / "docs"], settings).ok
    bot = RAG(settings)
    question = "When did Tim Berners-Lee finish the first web browser?"
    chunks = bot.searcher.search(question).chunks
    ranked = bot.rank_sentences(question, chunks)
    assert bot.context_score(question, ranked, chunks) > ranked[0].reader_score + 2.0
    answer = bot.ask(question)
    assert not answer.refused and "December 1990" in answer.answer


def test_a_sentence_its_context_leaves_no_room_for_keeps_its_own_score(
    tmp_path, settings: Settings
) -> None:
    """Read after a sentence before it too long to share the reader's input, a sentence would
    be cut to nothing (NO_ROOM) and the question refused; its score read alone stands."""
    from rag.reader import NO_ROOM, with_context

    docs = tmp_path / "docs"
    docs.mkdir()
    before = "The crew said " + " ".join(["qzx"] * 70) + " again."
    (docs / "ferry.md").write_text(
        f"# Ferry\n\n{before}\nThe ferry leaves Port Ederly at 9 am.\n", encoding="utf-8"
    )
    assert ingest([docs], settings).ok
    bot = RAG(settings)
    question = "When does the ferry leave Port Ederly?"
    chunks = bot.searcher.search(question).chunks
    best = bot.rank_sentences(question, chunks)[0]
    sentence = chunks[best.chunk_index].text[best.start : best.end]
    assert sentence == "The ferry leaves Port Ederly at 9 am."
    (cut,) = bot.reader.score(question, [(with_context("Ferry", before), sentence)])
    assert cut.score == NO_ROOM
    assert bot.in_context_scores(question, [best], chunks) == [best.reader_score]
    assert "9 am" in bot.ask(question).answer


def test_passage_reader_reads_each_chunk_once(tmp_path, settings: Settings) -> None:
    """A reader trained on passages (reader.json ``"input": "passage"``) ranks every sentence
    of the retrieved chunks from one read of each chunk, and that read, already in context,
    decides whether the documents answer."""
    from tests.conftest import passage_reader_copy

    folder = passage_reader_copy(tmp_path / "reader")
    write_browser_docs(tmp_path / "docs")
    settings = settings.model_copy(update={"reader_dir": folder})
    assert ingest([tmp_path / "docs"], settings).ok
    bot = RAG(settings)
    assert bot.reader.reads_passages
    question = "When did Tim Berners-Lee finish the first web browser?"
    chunks = bot.searcher.search(question).chunks
    ranked = bot.rank_sentences(question, chunks)
    sentences = {(c.chunk_index, c.start, c.end) for c in ranked}
    assert len(sentences) == len(ranked) >= 3  # every sentence, each once
    best = ranked[0]
    assert chunks[best.chunk_index].text[best.answer_start : best.answer_end] == "December 1990"
    assert bot.context_score(question, ranked, chunks) == best.reader_score
    answer = bot.ask(question)
    assert not answer.refused and "December 1990" in answer.answer


def test_sentences_rank_by_the_calibrated_combination(tmp_path, settings: Settings) -> None:
    """A candidate's score combines the reader's score, the sentence's similarity to the
    question and its chunk's place with reader.json's calibrated weights, and ranks by it: with
    the reader's weight set to zero, the order is the embedding similarity's."""
    import json
    import shutil

    from rag.reader import READER_DIR

    write_browser_docs(tmp_path / "docs")
    assert ingest([tmp_path / "docs"], settings).ok
    question = "When did Tim Berners-Lee finish the first web browser?"
    bot = RAG(settings)
    chunks = bot.searcher.search(question).chunks
    ranked = bot.rank_sentences(question, chunks)
    calibration = bot.reader.calibration
    for candidate in ranked:
        expected = calibration.sentence_score(
            candidate.reader_score, candidate.cosine, candidate.chunk_index
        )
        assert candidate.score == pytest.approx(expected)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert len({c.cosine for c in ranked}) > 1

    folder = tmp_path / "reader"
    shutil.copytree(READER_DIR, folder)
    info = json.loads((folder / "reader.json").read_text(encoding="utf-8"))
    info["calibration"] |= {"rank_reader_weight": 0.0, "rank_cosine_weight": 1.0}
    info["calibration"] |= {"rank_chunk_weight": 0.0, "rank_bias": 0.0}
    (folder / "reader.json").write_text(json.dumps(info))
    by_cosine = RAG(settings.model_copy(update={"reader_dir": folder}))
    reranked = by_cosine.rank_sentences(question, chunks)
    assert [c.score for c in reranked] == sorted((c.cosine for c in ranked), reverse=True)


def test_table_rows_are_read_after_their_header(tmp_path, settings: Settings) -> None:
    """A table row alone ("| collection | `RAG_COLLECTION` | `documents` |") does not say
    which cell is the default; the reader reads it after its table's header row, also in a
    chunk cut mid-table (the header kept in the chunk's metadata), and the answer quotes it."""
    header = "| setting | variable | default |"
    rows = [
        ("index folder", "`RAG_INDEX_DIR`", "`index/`"),
        ("Chroma server", "`RAG_CHROMA_URL`", "unset"),
        ("collection", "`RAG_COLLECTION`", "`documents`"),
        ("chunks per answer", "`RAG_K`", "4"),
    ]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "settings.md").write_text(
        "# Settings\n\nEvery setting has a default and an environment variable.\n\n"
        f"{header}\n| --- | --- | --- |\n"
        + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
        + "\n",
        encoding="utf-8",
    )
    small = settings.with_overrides(chunk_size=150, chunk_overlap=0)
    assert ingest([tmp_path / "docs"], small).ok
    bot = RAG(small)
    question = "What is the default collection name?"
    chunks = bot.searcher.search(question).chunks
    row = "| collection | `RAG_COLLECTION` | `documents` |"
    (chunk,) = [c for c in chunks if row in c.text]
    assert not chunk.text.startswith("#") and chunk.table_header == header  # cut mid-table
    (candidate,) = [
        c
        for c in bot.rank_sentences(question, chunks)
        if chunks[c.chunk_index].text[c.start : c.end] == row
    ]
    with_header, alone = bot.reader.score(
        question, [(with_context("Settings", header), row), ("Settings", row)]
    )
    assert candidate.reader_score == pytest.approx(with_header.score, abs=1e-4)
    assert with_header.score > alone.score
    answer = bot.ask(question)
    assert not answer.refused and "`documents`" in answer.answer
    assert "|." not in answer.answer  # a quoted row gets no full stop after its last "|"


def test_sentences_are_read_under_their_section(tmp_path, settings: Settings) -> None:
    """A sentence that names its subject only in its section's heading ("It leaves at 09:40."
    under "## Caskhaven ferry") is read after the document title and that heading, so a question
    naming the subject finds it and not the same kind of sentence in the section before."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ferries.md").write_text(
        "# Ferry guide\n\n## Vell Island ferry\n\n"
        "It leaves Port Ederly at 07:15 and the crossing takes forty minutes.\n\n"
        "## Caskhaven ferry\n\n"
        "It leaves Port Ederly at 09:40 and the crossing takes two hours.\n",
        encoding="utf-8",
    )
    assert ingest([tmp_path / "docs"], settings).ok
    bot = RAG(settings)
    for question, section, right, wrong in (
        ("How long is the crossing to Caskhaven?", "Caskhaven ferry", "two hours", "forty"),
        ("When does the Vell Island ferry leave?", "Vell Island ferry", "07:15", "09:40"),
    ):
        chunks = bot.searcher.search(question).chunks
        ranked = bot.rank_sentences(question, chunks)
        read = [chunks[c.chunk_index].text[c.start : c.end] for c in ranked]
        assert not any(text.startswith("## ") for text in read)  # headings are context only
        best = ranked[0]
        sentence = read[0]
        assert right in sentence
        under, alone = bot.reader.score(
            question, [(f"Ferry guide › {section}", sentence), ("Ferry guide", sentence)]
        )
        assert best.reader_score == pytest.approx(under.score, abs=1e-4)
        assert under.score > alone.score
        answer = bot.ask(question)
        assert not answer.refused and right in answer.answer and wrong not in answer.answer
        (citation,) = answer.citations
        assert citation.section == section  # where the quote is, shown with its source
        assert citation.location().endswith(f"ferries.md › {section}")
        assert answer.to_dict()["citations"][0]["section"] == section


def ranked_texts(bot: RAG, question: str) -> list[str]:
    """The texts the reader ranks for ``question`` over what it retrieves, best first."""
    chunks = bot.searcher.search(question).chunks
    return [
        chunks[c.chunk_index].text[c.start : c.end] for c in bot.rank_sentences(question, chunks)
    ]


def test_how_to_questions_are_answered_with_the_code(tmp_path, settings: Settings) -> None:
    """A README's commands are read line by line, as code: "How do I start the web UI?" is
    answered with the command that does it, quoted as code and cited, and never with a fence
    line or the whole block flattened into one "sentence"."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text(
        "# Harbourmaster\n\nHarbourmaster keeps a marina's berth bookings.\n\n"
        "To add it to an existing Python environment, install the package from PyPI:\n\n"
        "```\npip install harbourmaster\n```\n\n## Quick start\n\n"
        "```bash\n"
        "make install      # create .venv and install the dependencies\n"
        "harbour init      # create an empty bookings database\n"
        "harbour serve     # start the web UI on port 8080\n"
        "```\n\n"
        "The web UI shows free berths for the next fourteen days.\n",
        encoding="utf-8",
    )
    assert ingest([tmp_path / "docs"], settings).ok
    bot = RAG(settings)
    question = "How do I start the web UI of Harbourmaster?"
    read = ranked_texts(bot, question)
    assert not any(text.lstrip().startswith("```") for text in read)  # fences are not read
    assert any(text.startswith("make install") and "harbour serve" in text for text in read)
    answer = bot.ask(question)
    assert not answer.refused and "harbour serve" in answer.answer
    assert "```" in answer.answer or "`harbour serve" in answer.answer  # shown as code
    assert all(cited for _, cited in split_answer(answer.answer))  # every piece cited
    (citation,) = answer.citations
    assert "harbour serve" in citation.quote and "```" not in citation.quote
    assert citation.section == "Quick start"

    # A lead-in ending in ':' is read, and quoted, with the code under it.
    answer = bot.ask("How can I install Harbourmaster into my Python environment?")
    assert not answer.refused
    assert answer.answer.startswith("To add it to an existing Python environment, install the")
    assert "`pip install harbourmaster` [1]" in answer.answer
    assert all(cited for _, cited in split_answer(answer.answer))
    assert answer.citations[0].quote.endswith("```\npip install harbourmaster")


def test_html_pre_blocks_are_read_as_code(tmp_path, settings: Settings) -> None:
    """An HTML page's <pre> block is code as a markdown fence is: its lines are not joined into
    one "sentence", and a how-to question is answered with the command, quoted as code."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tidewatch.html").write_text(
        "<html><head><title>Tidewatch manual</title></head><body><h1>Tidewatch manual</h1>"
        "<p>Tidewatch records tide gauges and warns the harbour office of surges.</p>"
        "<h2>Exporting readings</h2><p>Readings are kept for ninety days.</p><pre><code>"
        "tidewatch export --since 2024-01-01 --format csv\n"
        "tidewatch purge --older-than 90d\n</code></pre>"
        "<p>Exports are written to the current folder.</p></body></html>",
        encoding="utf-8",
    )
    assert ingest([tmp_path / "docs"], settings).ok
    bot = RAG(settings)
    question = "Which Tidewatch command exports the readings as CSV?"
    read = ranked_texts(bot, question)
    assert (
        "tidewatch export --since 2024-01-01 --format csv\ntidewatch purge --older-than 90d" in read
    )
    answer = bot.ask(question)
    assert (
        not answer.refused and "tidewatch export --since 2024-01-01 --format csv" in answer.answer
    )
    assert "```" in answer.answer and all(cited for _, cited in split_answer(answer.answer))


def test_reader_budget_is_characters_past_the_first_twelve() -> None:
    """The 12 nearest candidates are always read; more only while all taken stay within the
    character budget, and never more than EXTRA_CANDIDATES_LIMIT."""
    pool = list(range(40))
    assert within_budget(pool, ["x" * 200] * 40) == pool[:MAX_READER_CANDIDATES]
    assert within_budget(pool[:5], ["x" * 10] * 5) == pool[:5]
    short = within_budget(pool, ["x" * 60] * 40)  # 24 x 60 = 1,440 characters
    assert short == pool[:EXTRA_CANDIDATES_LIMIT]
    mixed = ["x" * 60] * 12 + ["x" * 800] + ["x" * 60] * 27  # a long 13th ends it
    assert within_budget(pool, mixed) == pool[:MAX_READER_CANDIDATES]
    some = ["x" * 100] * 40  # 1,200 for the 12, then two more fit 1,451
    assert len(within_budget(pool, some)) == 14 and READER_CHARS_BUDGET == 1451


def test_documents_of_short_units_are_read_past_twelve(tmp_path, settings: Settings) -> None:
    """A reStructuredText README of many short doctest blocks (each read alone and with its
    lead-in) has more than 12 of them read, so the answering one is not lost to the count;
    the seed article's prose sentences stay at 12."""
    assert ingest([write_doctest_readme(tmp_path)], settings).ok
    bot = RAG(settings)
    question = "Which call does step 17 of the Tern tour show?"
    chunks = bot.searcher.search(question).chunks
    ranked = bot.rank_sentences(question, chunks)
    nearest = [c for c in ranked if c.decides]  # the cosine's choice (tests/test_selection.py)
    assert MAX_READER_CANDIDATES < len(nearest) <= EXTRA_CANDIDATES_LIMIT
    assert len(ranked) <= 2 * EXTRA_CANDIDATES_LIMIT


READMES = Path(__file__).resolve().parent.parent / "evals" / "corpora" / "readmes" / "validation"


def test_a_question_that_stands_on_its_own_is_not_merged_with_the_last(
    tmp_path, settings: Settings
) -> None:
    """In a conversation, a question with an "its" that refers to nothing before it ("... add
    FastAPI together with its standard extras") is retrieved and read as asked when the
    documents answer it so more surely than merged with the question before (a real case of
    the README validation set asked as a chat), while a real follow-up is still read with the
    question before it."""
    assert ingest([READMES], settings).ok
    bot = RAG(settings)
    first = (
        "With python-dotenv, how do I read a .env file into a dictionary without touching "
        "os.environ?"
    )
    history = [(first, bot.ask(first).answer)]
    question = (
        "What's the uv command to add FastAPI together with its standard extras to a project?"
    )
    answer = bot.ask(question, history=history)
    assert answer.standalone_question == question  # understood as asked
    assert not answer.refused and 'uv add "fastapi[standard]"' in answer.answer
    assert {c.source for c in answer.citations} == {"fastapi.md"}

    first = "How do I install python-dotenv?"
    history = [(first, bot.ask(first).answer)]
    answer = bot.ask("And how do I load the variables from its file in my code?", history=history)
    assert first in answer.standalone_question
    assert "load_dotenv" in answer.answer
