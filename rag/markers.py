"""The ``[n]`` citation marker: the one module that writes and reads it.

An answer sentence ends with the number of the source that supports it: ``… in 2023 [1].`` or
``… in 2023. [1]``; a group ``[1, 2]`` (or ``[1; 2]``) cites several.
"""

from __future__ import annotations

import re

GROUP = r"\[\d+(?:\s*[,;]\s*\d+)*\]"
# A marker group with the space before it; group(1) holds the numbers ("1, 2").
MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# One number, as the answer text writes it (``cite``); group(1) is the number.
SINGLE = re.compile(r"\[(\d+)\]")
LEADING = re.compile(r"^(?:\s*" + GROUP + r")+")
_TRAILING = re.compile(r"([.!?…][\"'”’)]*)((?:\s*" + GROUP + r")+)")


def cite(n: int) -> str:
    """The marker for source ``n``."""
    return f"[{n}]"


def numbers(text: str) -> list[int]:
    """The source numbers the markers in ``text`` cite, in order."""
    return [int(n) for group in MARKER.findall(text) for n in re.split(r"[,;]", group)]


def strip(text: str) -> str:
    """``text`` without its markers."""
    return MARKER.sub("", text)


def before_sentence_end(text: str) -> str:
    """Markers written after a sentence's end moved before it: "2023. [1]" → "2023 [1]."."""
    return _TRAILING.sub(lambda m: m.group(2) + m.group(1), text)
