"""A question as an FTS5 query (pure): quoted terms, stopwords out, common words demoted.

The local index (`remote.fulltext`) matches passages with the expression built here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from objlibd.errors import QueryError

_STOPWORD_TEXT = (
    "a about an and are as at be but by can could did do does for from had has have how i if in "
    "into is it its me my no not of on or our so than that the their them then there these "
    "they this to was we were what when where which who whom why will with would you your"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_PHRASE = re.compile(r'"([^"]*)"')
_WORD = re.compile(r"\w+")


def match_expression(question: str, common: Callable[[list[str]], set[str]] | None = None) -> str:
    """Return the FTS5 query for a question: quoted phrases kept, other words OR-ed.

    Stopwords are left out unless nothing else is left; every term is quoted, so FTS5
    operators in a question are plain words. `common` names the words found in a large share
    of the passages: when the question has rarer terms too, one of those is required and the
    common words only add to the score — `(rare ...) AND (rare ... OR common ...)` — which
    spares ranking most of the index for a question like "reason and Aristotle".
    """
    phrases = [_words(phrase) for phrase in _PHRASE.findall(question)]
    words = _words(_PHRASE.sub(" ", question))
    kept = list(dict.fromkeys([word for word in words if word not in _STOPWORDS] or words))
    quoted = ['"' + " ".join(phrase) + '"' for phrase in phrases if phrase]
    if not quoted and not kept:
        raise QueryError(f"nothing to search for in {question!r}: it has no words")
    frequent = common(kept) if common is not None and len(quoted) + len(kept) > 1 else set()
    rare = quoted + [f'"{word}"' for word in kept if word not in frequent]
    everything = quoted + [f'"{word}"' for word in kept]
    if not frequent or not rare:
        return " OR ".join(everything)
    return f"({' OR '.join(rare)}) AND ({' OR '.join(everything)})"


def fold(word: str) -> str:
    """Return a word as the unicode61 tokenizer (remove_diacritics 2) stores it."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())
