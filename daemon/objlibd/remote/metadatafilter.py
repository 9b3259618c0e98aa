"""`--where`: the metadata filter both backends understand (a subset of AIP-160).

Gemini's `metadata_filter` speaks AIP-160 (google.aip.dev/160). objlibd accepts the part a
library needs and checks it before any call, so a typo is a clear error (exit 2) instead of
a 400 from the service:

    collection = "OPAR"                    comparators: = != < <= > >= and : (has)
    extension = "pdf" AND NOT collection = "Notes"
    (collection = "A" OR collection = "B") year >= 1962     a space between terms is AND
    path : *                               the document has the key

Strings are quoted ("..." or '...', backslash escapes); unquoted numbers compare as
numbers; an unquoted word is a string. Precedence is AIP-160's: OR binds tighter than the
space and AND (`a AND b OR c` is `a AND (b OR c)`); NOT binds tightest. The gemini backend
sends the text as written; the local backend runs the parsed filter as SQL over its index.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from objlibd.errors import QueryError

Op = Literal["=", "!=", "<", "<=", ">", ">=", ":"]
Value = str | float

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|!=|=|<|>|:)
      | (?P<paren>[()])
      | (?P<minus>-(?=[A-Za-z_(]))
      | (?P<word>[^\s()<>=!:"']+)
    )""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_KEYWORDS = ("AND", "OR", "NOT")
ANY = "*"  # `key : *` — the key is present


@dataclass(frozen=True, slots=True)
class Compare:
    """`key op value`."""

    key: str
    op: Op
    value: Value


@dataclass(frozen=True, slots=True)
class Not:
    """`NOT expr` (or `-expr`)."""

    item: Filter


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every item holds (AND, or terms side by side)."""

    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Some item holds (OR)."""

    items: tuple[Filter, ...]


Filter = Compare | Not | AllOf | AnyOf


def parse_filter(text: str) -> Filter:
    """Parse a `--where` filter; raise QueryError saying what is wrong and where."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def fail(self, reason: str) -> QueryError:
        return QueryError(
            f"--where {self.text!r}: {reason}",
            hint='write key = "value", joined with AND / OR / NOT, e.g. '
            'collection = "OPAR" AND extension = "pdf"',
        )

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise self.fail("it ends too early")
        self.pos += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token == ("word", word)

    def parse(self) -> Filter:
        if not self.tokens:
            raise self.fail("the filter is empty")
        result = self.expression()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return result

    def expression(self) -> Filter:
        items = [self.sequence()]
        while self.is_word("AND"):
            self.pos += 1
            items.append(self.sequence())
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def sequence(self) -> Filter:
        items = [self.factor()]
        while (
            (token := self.peek()) is not None
            and token != ("paren", ")")
            and not self.is_word("AND")
        ):
            items.append(self.factor())
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def factor(self) -> Filter:
        items = [self.term()]
        while self.is_word("OR"):
            self.pos += 1
            items.append(self.term())
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def term(self) -> Filter:
        if self.is_word("NOT") or self.peek() == ("minus", "-"):
            self.pos += 1
            return Not(self.simple())
        return self.simple()

    def simple(self) -> Filter:
        kind, text = self.take()
        if (kind, text) == ("paren", "("):
            inner = self.expression()
            if self.take() != ("paren", ")"):
                raise self.fail("a '(' is not closed")
            return inner
        if kind != "word" or text in _KEYWORDS or not _KEY.fullmatch(text):
            raise self.fail(f"expected a metadata key, got {text!r}")
        token = self.peek()
        if token is None or token[0] != "op":
            raise self.fail(
                f"{text!r} is not `key op value` (op: = != < <= > >= :); "
                'quote a value with spaces: key = "two words"'
            )
        self.pos += 1
        op: Op = token[1]  # type: ignore[assignment]
        return Compare(text, op, self.value(op))

    def value(self, op: Op) -> Value:
        kind, text = self.take()
        if kind == "string":
            return _unquote(text)
        if kind != "word" or text in _KEYWORDS:
            raise self.fail(f"expected a value after {op!r}, got {text!r}")
        if text == ANY and op != ":":
            raise self.fail("'*' only means 'has the key' after ':'")
        if _NUMBER.fullmatch(text):
            return float(text)
        return text


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise QueryError(
                f"--where {text!r}: cannot read it from {text[pos:].strip()[:20]!r}",
                hint='quote string values: key = "value with spaces"',
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


# -- evaluation -----------------------------------------------------------------------------


def matches(item: Filter, metadata: Mapping[str, Value]) -> bool:  # noqa: PLR0911
    """Return whether a document with `metadata` passes the filter (the reference semantics).

    A comparison with a key the document lacks is false (so `!=` is true there); strings
    compare with strings and numbers with numbers, a mixed comparison is false.
    """
    if isinstance(item, AllOf):
        return all(matches(part, metadata) for part in item.items)
    if isinstance(item, AnyOf):
        return any(matches(part, metadata) for part in item.items)
    if isinstance(item, Not):
        return not matches(item.item, metadata)
    if item.op == "!=":
        return not matches(Compare(item.key, "=", item.value), metadata)
    if item.key not in metadata:
        return False
    have = metadata[item.key]
    if item.op == ":" and item.value == ANY:
        return True
    if isinstance(have, str) != isinstance(item.value, str):
        return False
    return _compare(have, item.op, item.value)


def _compare(have: Value, op: Op, want: Value) -> bool:
    if op in ("=", ":"):
        return have == want
    if isinstance(have, str) and isinstance(want, str):
        return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op]
    a, b = float(have), float(want)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def to_sql(item: Filter, doc_column: str) -> tuple[str, list[object]]:
    """Return a SQL condition on `doc_column` (a document's rowid) and its parameters.

    It reads the table `meta(doc, key, sval, nval)` (one row per metadata entry: the string
    in `sval` or the number in `nval`) and means exactly what `matches` means.
    """
    if isinstance(item, AllOf | AnyOf):
        parts = [to_sql(part, doc_column) for part in item.items]
        joiner = " AND " if isinstance(item, AllOf) else " OR "
        return (
            "(" + joiner.join(sql for sql, _ in parts) + ")",
            [param for _, params in parts for param in params],
        )
    if isinstance(item, Not):
        sql, params = to_sql(item.item, doc_column)
        return f"(NOT {sql})", params
    if item.op == "!=":
        sql, params = to_sql(Compare(item.key, "=", item.value), doc_column)
        return f"(NOT {sql})", params
    subquery = f"{doc_column} IN (SELECT doc FROM meta WHERE key = ?"
    if item.op == ":" and item.value == ANY:
        return subquery + ")", [item.key]
    column = "sval" if isinstance(item.value, str) else "nval"
    op = "=" if item.op == ":" else item.op
    return f"{subquery} AND {column} {op} ?)", [item.key, item.value]
