"""`--where`: one filter language, three evaluations that must agree.

objlibd parses the filter (`metadatafilter`), evaluates it in Python (`matches`, the
reference semantics) and as SQL over the local index's `meta` table (`to_sql`); the fake
Gemini server has its own, separately written evaluator. Hypothesis generates filters and
documents and checks all three give the same answer, so none can drift from the others.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes.gemini_query import QueryError as FakeQueryError
from fakes.gemini_query import compile_filter
from objlibd.errors import QueryError
from objlibd.remote.metadatafilter import (
    AllOf,
    AnyOf,
    Compare,
    Filter,
    Not,
    matches,
    parse_filter,
    to_sql,
)

KEYS = ("collection", "year", "path", "kind")
STRINGS = ("OPAR", "Notes", "a b", 'say "hi"', "x")
NUMBERS = (1962.0, 1963.0, 0.5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('collection = "OPAR"', Compare("collection", "=", "OPAR")),
        ("collection='OPAR'", Compare("collection", "=", "OPAR")),
        ("year >= 1962", Compare("year", ">=", 1962.0)),
        ("kind = lecture", Compare("kind", "=", "lecture")),
        ("path : *", Compare("path", ":", "*")),
        (r'path = "dir/a \"b\".txt"', Compare("path", "=", 'dir/a "b".txt')),
        ('NOT a = "x"', Not(Compare("a", "=", "x"))),
        ('-a = "x"', Not(Compare("a", "=", "x"))),
        # AIP-160: OR binds tighter than AND and than the implicit AND of a space.
        (
            'a = "1" AND b = "2" OR c = "3"',
            AllOf(
                (Compare("a", "=", "1"), AnyOf((Compare("b", "=", "2"), Compare("c", "=", "3"))))
            ),
        ),
        (
            '(a = "1" OR a = "2") b != 3',
            AllOf(
                (AnyOf((Compare("a", "=", "1"), Compare("a", "=", "2"))), Compare("b", "!=", 3.0))
            ),
        ),
    ],
)
def test_the_filter_reads_as_aip_160(text: str, expected: Filter) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("author=Robert Graves", 'quote a value with spaces: key = "two words"'),
        ('collection = "OPAR', "cannot read it"),
        ("collection =", "ends too early"),
        ('(a = "x"', "ends too early"),
        ('a = "x")', "unexpected ')'"),
        ("= 3", "expected a metadata key"),
        ("a = *", "'*' only means"),
        ('a = "x" AND', "ends too early"),
    ],
)
def test_a_bad_filter_is_a_usage_error_saying_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_filter(text)

    assert says in caught.value.message
    assert caught.value.exit_code == 2
    assert "key = " in caught.value.hint


# -- three evaluations, one meaning ---------------------------------------------------------

values = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS))
compares = st.builds(
    Compare,
    st.sampled_from(KEYS),
    st.sampled_from(["=", "!=", "<", "<=", ">", ">=", ":"]),
    values,
) | st.builds(Compare, st.sampled_from(KEYS), st.just(":"), st.just("*"))
filters = st.recursive(
    compares,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(AllOf, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(AnyOf, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=6,
)
documents = st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=4), max_size=6)


def render(item: Filter) -> str:
    """Write a filter back as text, parenthesised so precedence cannot change its meaning."""
    if isinstance(item, Compare):
        if item.value == "*":
            return f"{item.key} : *"
        if isinstance(item.value, str):
            quoted = item.value.replace("\\", "\\\\").replace('"', '\\"')
            return f'{item.key} {item.op} "{quoted}"'
        return f"{item.key} {item.op} {item.value!r}"
    if isinstance(item, Not):
        return f"NOT ({render(item.item)})"
    joiner = " AND " if isinstance(item, AllOf) else " OR "
    return "(" + joiner.join(render(part) for part in item.items) + ")"


def sql_matches(item: Filter, docs: list[dict[str, str | float]]) -> list[bool]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE docs(id INTEGER PRIMARY KEY, metadata TEXT)")
    conn.execute("CREATE TABLE meta(doc INTEGER, key TEXT, sval TEXT, nval REAL)")
    for number, metadata in enumerate(docs):
        conn.execute("INSERT INTO docs VALUES (?, ?)", (number, json.dumps(metadata)))
        for key, value in metadata.items():
            text, num = (value, None) if isinstance(value, str) else (None, value)
            conn.execute("INSERT INTO meta VALUES (?, ?, ?, ?)", (number, key, text, num))
    condition, params = to_sql(item, "d.id")
    chosen = {row[0] for row in conn.execute(f"SELECT d.id FROM docs d WHERE {condition}", params)}
    conn.close()
    return [number in chosen for number in range(len(docs))]


@settings(max_examples=150, deadline=None)
@given(filters, documents)
def test_parse_python_sql_and_the_fake_agree(
    item: Filter, docs: list[dict[str, str | float]]
) -> None:
    text = render(item)
    parsed = parse_filter(text)
    expected = [matches(item, doc) for doc in docs]
    try:
        fake = compile_filter(text)
    except FakeQueryError as err:  # pragma: no cover - a disagreement is the failure
        pytest.fail(f"the fake refused {text!r}: {err}")

    assert [matches(parsed, doc) for doc in docs] == expected, text
    assert sql_matches(item, docs) == expected, text
    assert [fake(doc) for doc in docs] == expected, text
