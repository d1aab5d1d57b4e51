"""The HTML eval report in real Chromium: it fits a 1280 px window (no horizontal scroll), long
file names wrap, and the answer column is a readable width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rag.config import Settings

pytestmark = pytest.mark.browser

LONG_NAME_SET = """
name: report layout
questions:
  - id: share
    question: What share of Russia's microelectronics came from China in 2023?
    expected: [["90%"]]
    evidence: "90% of Russia's microelectronics"
    source: china_russia_military_supply.txt
  - id: missing
    question: Which_very_long_identifier_without_any_spaces_at_all_appears_in_the_file_name_here?
    expected: [["an_expected_answer_that_is_one_very_long_token_with_no_spaces_whatsoever"]]
  - id: offtopic
    question: How long should I boil an egg for a soft yolk?
    answerable: false
"""


def test_report_fits_1280_px(browser: Any, seed_index: Settings, tmp_path: Path) -> None:
    from rag.cli import main

    question_set = tmp_path / "layout.yaml"
    question_set.write_text(LONG_NAME_SET, encoding="utf-8")
    report = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        ["eval", str(question_set), "--index", str(seed_index.index_dir), "--llm",
         "extractive", "--report", str(report)],
        catch_exceptions=False,
    )  # fmt: skip
    assert (report / "report.html").exists(), result.output
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto((report / "report.html").as_uri())
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 1280, f"the report is {width} px wide"
        answer_cell = page.locator("table.items tr").nth(1).locator("td").nth(3)
        assert answer_cell.bounding_box()["width"] >= 200  # not a tall narrow strip
        for code in page.locator("table.items code").all():
            box = code.bounding_box()
            assert box is None or box["x"] + box["width"] <= 1280
    finally:
        page.close()
