"""Terms: the one tokenizer that keyword search (BM25) and answer checking share.

Lower-cased words of two or more word characters (bm25s's splitter), English stopwords left
out (bm25s's list), Snowball-stemmed (PyStemmer). ``terms`` is what the answer checker compares
a sentence with its source by; ``bm25_tokenizer`` is the same tokenizer as bm25s builds the
keyword index with.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from typing import Any

SPLITTER = r"(?u)\b\w\w+\b"
_WORDS = re.compile(SPLITTER)
_LOCAL = threading.local()


@cache
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def _stemmer() -> Any:
    stemmer = getattr(_LOCAL, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _LOCAL.stemmer = Stemmer.Stemmer("english")
    return stemmer


def stem(word: str) -> str:
    return _stemmer().stemWord(word)


def terms(text: str) -> list[str]:
    """The text's index terms, in order (what BM25 indexes and looks up)."""
    stop = stopwords()
    return [stem(word) for word in _WORDS.findall(text.lower()) if word not in stop]


def bm25_tokenizer() -> Any:
    """A bm25s tokenizer producing exactly ``terms``."""
    import bm25s
    import Stemmer

    return bm25s.tokenization.Tokenizer(
        lower=True,
        splitter=SPLITTER,
        stopwords=sorted(stopwords()),
        stemmer=Stemmer.Stemmer("english").stemWord,
    )
