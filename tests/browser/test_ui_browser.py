"""The chat UI in a real headless Chromium: load, ask (real default LLM, streamed), sources,
refusals, uploads, hostile HTML shown inert, phone-sized screens, no external requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_ui_support import ANSWERED, QUESTION, SEED_FILE, UNANSWERABLE, ChatPage

pytestmark = pytest.mark.browser

# Records every state the newest assistant message goes through while an answer streams in.
WATCH_STREAM = """
() => {
  window.__states = [];
  const chat = document.querySelector('#rag-chat');
  const record = () => {
    const bots = chat.querySelectorAll('[data-testid="bot"] .message-content');
    const last = bots[bots.length - 1];
    if (!last) return;
    const kind = last.querySelector('.rag-partial') ? 'partial'
      : last.querySelector('.rag-pending') ? 'pending'
      : last.querySelector('.rag-answer') ? 'answer'
      : last.querySelector('.rag-refusal') ? 'refusal' : 'other';
    const body = last.querySelector('.rag-partial, .rag-answer');
    const text = kind === 'answer'
      ? body.innerText.slice(0, body.innerText.length
                                 - body.querySelector('.rag-meta').innerText.length)
      : body ? body.innerText : last.innerText;
    const previous = window.__states[window.__states.length - 1];
    if (!previous || previous.kind !== kind || previous.text !== text)
      window.__states.push({kind, text});
  };
  new MutationObserver(record).observe(chat, {subtree: true, childList: true,
                                              characterData: true});
}
"""

HOSTILE_DOCUMENT = (
    "Plumbus output report.\n\n"
    "The Gazorpazorp plumbus plant makes 300 plumbuses per day. "
    '<script>window.__pwned = "script";</script>'
    "<img src=\"x\" onerror=\"window.__pwned = 'img'; alert('img')\">"
    '<a href="javascript:alert(1)">click me</a> **not bold** [link](javascript:alert(2))\n\n'
    "Its director is Squanchy Smith. <iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\">"
    "</iframe><svg onload=\"alert('svg')\"></svg>\n"
)
HOSTILE_NAME = "<img src=x onerror=\"alert('name')\">plumbus.txt"


def _no_script_ran(chat: ChatPage) -> None:
    page = chat.page
    assert chat.dialogs == [], chat.dialogs
    assert page.evaluate("() => window.__pwned === undefined")
    injected = page.evaluate(
        '() => document.querySelectorAll(\'#rag-chat img[src="x"], #rag-chat iframe, '
        '#rag-chat svg[onload], #rag-chat a[href^="javascript"], #rag-stats img, '
        "#rag-upload-status img, [onerror]').length"
    )
    assert injected == 0


def test_page_loads_offline_with_index_panel_and_examples(browser: Any, browser_ui, shots) -> None:
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        stats = chat.page.locator("#rag-stats").inner_text()
        assert "1 document ·" in stats and SEED_FILE.name in stats
        # Example questions name what is indexed.
        assert chat.page.get_by_text("What is china russia military supply about?").count() >= 1
        assert chat.page.locator("#rag-reindex").is_enabled()
        chat.screenshot(shots, "desktop-empty")
        assert chat.external_requests == [], chat.external_requests
        assert chat.console_errors == [], chat.console_errors
    finally:
        chat.close()


def test_ask_streams_a_cited_answer_from_the_default_llm(browser: Any, browser_ui, shots) -> None:
    """The real local LLM (SmolLM2 via llama.cpp): a working note, then only checked sentences,
    then the answer with [n] markers and an expandable Sources block."""
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.page.evaluate(WATCH_STREAM)
        answer = chat.ask(QUESTION, timeout=240_000)
        states: list[dict] = chat.page.evaluate("() => window.__states")
        kinds = [state["kind"] for state in states if state["kind"] != "other"]
        assert kinds[0] == "pending" and kinds[-1] == "answer", states
        # Nothing unchecked is ever on screen: every state shown while the answer was being
        # made is the working note or a prefix of the final answer's text.
        final = " ".join(states[-1]["text"].split())
        for state in states:
            if state["kind"] == "partial":
                assert final.startswith(" ".join(state["text"].split())), (state, final)

        assert "rag-answer" in (answer.get_attribute("class") or "")
        text = answer.inner_text()
        assert "90%" in text and "[1]" in text
        assert "local" in text  # the footer names the LLM that drafted it
        assert answer.locator("sup.rag-cite").count() >= 1

        chunk = chat.expand_last_sources()
        head = chat.page.locator(".rag-sources .rag-source-head").first.inner_text()
        assert SEED_FILE.name in head and "chunk" in head
        marked = chunk.locator("mark").inner_text()
        assert marked and marked in " ".join(SEED_FILE.read_text(encoding="utf-8").split())
        assert marked in chunk.inner_text()
        chat.screenshot(shots, "desktop-answer-sources")
        assert chat.external_requests == []
    finally:
        chat.close()


def test_refusal_looks_different_from_an_answer(browser: Any, browser_ui, shots) -> None:
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.set_extractive(True)
        answered = chat.ask(QUESTION)
        refused = chat.ask(UNANSWERABLE)
        assert "rag-refusal" in (refused.get_attribute("class") or "")
        assert "not in the documents" in refused.inner_text().lower()
        assert refused.locator("sup.rag-cite").count() == 0
        style = (
            "el => getComputedStyle(el).borderLeftColor + '|' "
            "+ getComputedStyle(el).backgroundColor"
        )
        assert refused.evaluate(style) != answered.evaluate(style)
        chat.screenshot(shots, "desktop-refusal")
    finally:
        chat.close()


def test_clicking_a_citation_opens_and_shows_its_source(browser: Any, browser_ui, shots) -> None:
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.set_extractive(True)
        answer = chat.ask(QUESTION)
        chat.page.wait_for_timeout(500)  # the answer's event completes (one last re-render)
        cite = answer.locator("sup.rag-cite").first
        number = cite.inner_text().strip()
        cite.click()
        source = chat.page.locator(".rag-source.rag-flash")
        source.wait_for(state="visible", timeout=5_000)
        assert source.locator(".rag-source-n").inner_text() == number
        assert source.locator("mark").count() == 1
        chat.page.wait_for_timeout(600)  # smooth scrolling
        box = source.bounding_box()
        viewport = chat.page.viewport_size
        assert box and viewport and 0 <= box["y"] < viewport["height"]
        cite.click()  # a second click keeps the block open
        chat.page.wait_for_timeout(300)
        assert chat.page.locator(".rag-source").last.is_visible()
        chat.screenshot(shots, "desktop-citation-clicked")
    finally:
        chat.close()


def test_copy_and_regenerate_an_answer(browser: Any, browser_ui) -> None:
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.set_extractive(True)
        page = chat.page
        answer = chat.ask(QUESTION)
        page.wait_for_timeout(500)
        answer.locator(".rag-copy").click()
        copied = page.wait_for_function("() => window.__ragCopied", timeout=5_000).json_value()
        assert "90%" in copied and "[1]" in copied and "Sources:" in copied
        assert SEED_FILE.name in copied and "<" not in copied
        answers = page.locator(ANSWERED).count()
        questions = page.locator("#rag-chat .rag-question").count()
        answer.locator(".rag-regen").click()
        page.wait_for_function(  # the question again, waiting or being answered
            "() => document.querySelector('#rag-chat .rag-pending, #rag-chat .rag-queued')",
            timeout=10_000,
        )
        page.wait_for_function(
            f"n => document.querySelectorAll({ANSWERED!r}).length === n "
            "&& !document.querySelector('#rag-chat .rag-pending')",
            arg=answers,
            timeout=60_000,
        )
        assert page.locator("#rag-chat .rag-question").count() == questions  # in place
        assert "90%" in page.locator(ANSWERED).last.inner_text()
    finally:
        chat.close()


def test_two_questions_sent_300_ms_apart_are_both_answered_in_order(
    browser: Any, browser_ui
) -> None:
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.set_extractive(True)
        page = chat.page
        before = page.locator(ANSWERED).count()
        asked = page.locator(".rag-question").count()
        box = page.locator("#rag-question textarea")
        box.fill(QUESTION)
        box.press("Enter")
        page.wait_for_timeout(300)
        box.fill(UNANSWERABLE)
        page.locator("button", has_text="Ask").first.click()
        # Both questions are on screen at once (the second marked as queued until its turn).
        page.wait_for_function(
            "n => document.querySelectorAll('#rag-chat .rag-question').length >= n",
            arg=asked + 2,
            timeout=10_000,
        )
        assert box.input_value() == ""
        page.wait_for_function(
            f"n => document.querySelectorAll({ANSWERED!r}).length >= n",
            arg=before + 2,
            timeout=120_000,
        )
        questions = page.locator("#rag-chat .rag-question").all_inner_texts()[-2:]
        assert questions == [QUESTION, UNANSWERABLE]
        answers = page.locator(ANSWERED)
        assert "rag-answer" in (answers.nth(before).get_attribute("class") or "")
        assert "rag-refusal" in (answers.nth(before + 1).get_attribute("class") or "")
        page.wait_for_timeout(1000)  # no late update takes either away
        assert page.locator(ANSWERED).count() == before + 2
        assert page.locator("#rag-chat .rag-queued").count() == 0
    finally:
        chat.close()


def test_example_question_and_follow_up(browser: Any, browser_ui) -> None:
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.set_extractive(True)
        before = chat.page.locator(".rag-answer").count()
        chat.page.get_by_text("What is china russia military supply about?").first.click()
        chat.page.wait_for_function(
            "n => document.querySelectorAll('.rag-answer').length > n", arg=before
        )
        assert "[1]" in chat.page.locator(".rag-answer").last.inner_text()
        first = chat.ask("How much were Russia's machine tool imports from China worth?")
        assert "$900 million" in first.inner_text()
        follow = chat.ask("Who supplies them?")
        assert "understood as" in follow.inner_text()
        assert "machine tool imports" in follow.inner_text()
        chat.page.locator("button", has_text="New chat").click()
        chat.page.wait_for_function("() => !document.querySelector('.rag-answer')")
        fresh = chat.ask("Who supplies them?")
        assert "understood as" not in fresh.inner_text()
    finally:
        chat.close()


def test_upload_a_file_then_ask_about_it(browser: Any, browser_ui, tmp_path: Path, shots) -> None:
    document = tmp_path / "velmora bridge.md"
    document.write_text(
        "# Velmora bridge\n\nThe Velmora bridge is 730 metres long. It opened to traffic in "
        "1999 after six years of construction.\n"
    )
    broken = tmp_path / "scan.pdf"
    broken.write_bytes(b"%PDF-1.4\n% truncated")
    script = tmp_path / "tool.py"
    script.write_text("print('not a document')")
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.set_extractive(True)
        status = chat.upload([str(document), str(broken), str(script)])
        text = status.inner_text()
        assert "1 added" in text and "1 failed" in text, text
        assert "scan.pdf" in text and "tool.py: file type .py is not accepted" in text, text
        chat.page.wait_for_function(
            "() => document.querySelector('#rag-stats').innerText.includes('velmora bridge.md')"
        )
        chat.screenshot(shots, "desktop-upload-error")
        answer = chat.ask("How long is the Velmora bridge?")
        assert "730 metres" in answer.inner_text()
        chat.expand_last_sources()
        assert "velmora bridge.md" in chat.page.locator(".rag-source-head").last.inner_text()
    finally:
        chat.close()


def test_html_and_script_in_documents_and_names_stay_inert(browser: Any, browser_ui) -> None:
    chat = ChatPage(browser, browser_ui.url).open()
    try:
        chat.set_extractive(True)
        status = chat.upload(
            [{"name": HOSTILE_NAME, "mimeType": "text/plain", "buffer": HOSTILE_DOCUMENT.encode()}]
        )
        assert "1 added" in status.inner_text(), status.inner_text()
        answer = chat.ask("How many plumbuses does the Gazorpazorp plant make per day?")
        assert "300 plumbuses" in answer.inner_text()
        chunk = chat.expand_last_sources()
        shown = chunk.inner_text()
        assert '<script>window.__pwned = "script";</script>' in shown
        assert "onerror=" in shown and "**not bold**" in shown
        assert chunk.locator("strong, a, script, img").count() == 0
        head = chat.page.locator(".rag-source-head").last.inner_text()
        assert "plumbus.txt" in head and "<" not in head  # the stored name is a safe one
        typed = chat.ask("<img src=x onerror=\"alert('typed')\"> what does the plant make?")
        assert typed.is_visible()
        user_bubbles = chat.page.locator('[data-testid="user"]').all_inner_texts()
        assert any("<img src=x onerror=" in text for text in user_bubbles)
        chat.page.wait_for_timeout(500)
        _no_script_ran(chat)
        assert chat.external_requests == [], chat.external_requests
    finally:
        chat.close()


def test_phone_screen_keeps_the_chat_usable(browser: Any, browser_ui, shots) -> None:
    chat = ChatPage(browser, browser_ui.url, width=390, height=844).open()
    try:
        chat.page.wait_for_function("() => !document.querySelector('.sidebar.open')")
        chat.screenshot(shots, "mobile-empty")
        chat.set_extractive(True)
        chat.page.locator("button.toggle-button").first.click()  # close the panel again
        chat.page.wait_for_function("() => !document.querySelector('.sidebar.open')")
        answer = chat.ask(QUESTION)
        assert "[1]" in answer.inner_text()
        chat.expand_last_sources()
        box = answer.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        width = chat.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways ({width}px)"
        chat.screenshot(shots, "mobile-answer-sources")
    finally:
        chat.close()


LAYOUT_FACTS = """
() => {
  const rect = (el) => { if (!el) return null; const r = el.getBoundingClientRect();
    return {x: r.x, y: r.y, w: r.width, h: r.height, right: r.right, bottom: r.bottom,
            visible: r.width > 0 && r.height > 0 && el.offsetParent !== null}; };
  const ask = Array.from(document.querySelectorAll('#rag-input-row button'));
  const clears = Array.from(document.querySelectorAll('#rag-chat button[aria-label="Clear"]'));
  const icon = document.querySelector('#rag-settings .label-wrap .icon');
  return {
    scrollWidth: document.documentElement.scrollWidth,
    toggle: rect(document.querySelector('.toggle-button')),
    title: rect(document.querySelector('#rag-title h1')),
    input: rect(document.querySelector('#rag-question textarea')),
    buttons: ask.map(rect),
    clears: clears.map(rect).filter((r) => r.visible),
    messages: Array.from(document.querySelectorAll('#rag-chat .message-row')).map(rect),
    chat: rect(document.querySelector('#rag-chat')),
    row: rect(document.querySelector('#rag-input-row')),
    arrow: icon ? getComputedStyle(icon).transform : null,
  };
}
"""


def _overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["right"]
        and b["x"] < a["right"]
        and a["y"] < b["bottom"]
        and b["y"] < a["bottom"]
    )


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)])
def test_layout_rules_on_desktop_and_phone(
    browser: Any, browser_ui, shots, width: int, height: int
) -> None:
    chat = ChatPage(browser, browser_ui.url, width=width, height=height).open()
    try:
        chat.set_extractive(True)
        if width < 768:  # the panel covers the chat on a phone: close it again
            chat.page.locator("button.toggle-button").first.click()
            chat.page.wait_for_timeout(400)
        chat.ask(QUESTION)
        chat.ask(UNANSWERABLE)
        chat.page.wait_for_timeout(600)
        facts = chat.page.evaluate(LAYOUT_FACTS)
        chat.screenshot(shots, f"layout-{width}x{height}")
        assert facts["scrollWidth"] <= width, facts["scrollWidth"]
        assert not _overlap(facts["toggle"], facts["title"]), (facts["toggle"], facts["title"])
        for clear in facts["clears"]:  # no clear icon on top of a message
            assert not any(_overlap(clear, m) for m in facts["messages"]), clear
        input_box = facts["input"]
        for button in facts["buttons"]:  # Ask and New chat: in view, beside the input
            assert button["visible"] and button["right"] <= width and button["bottom"] <= height
            assert button["y"] < input_box["bottom"] and input_box["y"] < button["bottom"]
        # The chat fills the height down to the input row: no dead space under it.
        assert facts["row"]["y"] - facts["chat"]["bottom"] < 48, (facts["chat"], facts["row"])
        assert facts["chat"]["h"] >= 0.5 * height
        if width >= 768:  # the settings arrow points down when open, right (▶) when closed
            assert facts["arrow"] == "matrix(1, 0, 0, 1, 0, 0)", facts["arrow"]
            chat.page.locator("#rag-settings .label-wrap").click()
            chat.page.wait_for_timeout(400)
            arrow = chat.page.evaluate(LAYOUT_FACTS)["arrow"]
            assert arrow.startswith("matrix(") and arrow.split(",")[1].strip() == "-1", arrow
    finally:
        chat.close()
