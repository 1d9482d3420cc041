"""The words two texts are compared by, and where each word sits in the original text.

Comparison ignores case, width forms and punctuation (NFKC then casefold, runs of letters and
digits), so "Find  the SUM," and "find the sum" share every word. The spans point into the text as
stored, so a match can be highlighted where a reviewer reads it.
"""

import re
import unicodedata

_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> list[str]:
    return _WORD.findall(normalize(text))


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """Each word with its (start, end) in `text`. NFKC can change a string's length, so the spans
    are found on the original text and each word normalised alone."""
    return [(normalize(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]


# Sentence punctuation and quotes: what a copy changes without changing what it says. Operators
# (+ - * / = < > ^ ( ) %) stay, so "2+2" and "2-2" remain different texts.
_SENTENCE_PUNCTUATION = str.maketrans(dict.fromkeys(".,;:!?\"'`\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026", " "))
_WORD_OR_SYMBOL = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Normalised words and symbols, sentence punctuation and quotes left out: what duplicate checks
    compare. One regex pass (str.translate drops the punctuation first, at C speed)."""
    return _WORD_OR_SYMBOL.findall(normalize(text).translate(_SENTENCE_PUNCTUATION))


def canonical(text: str) -> str:
    """The text as an exact-duplicate check compares it: its tokens one space apart. Two texts
    differing only in case, spacing or punctuation have the same canonical form ("72.</think>" and
    "72 </think>" too)."""
    return " ".join(tokens(text))
