"""The fake's query side: `models/{m}:generateContent` with the `fileSearch` tool.

Follows shared/reference/gemini-file-search-query.md: the tool's keys in camelCase or
snake_case at both levels; a 4xx for an unknown store ("does not exist"), more than 5
stores, no store names, File Search combined with Google Search or URL Context, a bad
`metadata_filter`, a model that does not serve File Search; grounding chunks found by simple
term match in the stored documents' text, each with the document's title (display name),
`customMetadata` and store; `metadata_filter` as a small AIP-160 evaluator (=, !=, <, <=, >,
>=, :, AND, OR, NOT, parentheses, quoted strings), written apart from objlibd's own parser
so the two can disagree. Supports point at the answer's sentences by **byte** offsets, with
`startIndex` left out when it is 0 (proto3 drops zeros), as the real service does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_STORES = 5
CHUNK_CHARS = 500
# gemini-file-search-query.md §1.3, newest list; the 2.5 models are retired here.
MODELS = frozenset({
    "gemini-3.8-flash", "gemini-3.7-flash", "gemini-3.6-flash", "gemini-3.5-flash",
    "gemini-3.5-flash-lite", "gemini-3.1-pro-preview", "gemini-3.1-flash-lite",
    "gemini-3-flash-preview",
})  # fmt: skip
NO_ANSWER = "I could not find anything about that in the files."
_STOP_TEXT = (
    "the and for are was were what who whom why how when where which that this with from "
    "into about does did has have had not you your our its"
)
_STOP = frozenset(_STOP_TEXT.split())


class QueryError(Exception):
    """A 4xx the query side answers; (code, message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def pick(mapping: dict[str, Any], camel: str, default: Any = None) -> Any:
    if camel in mapping:
        return mapping[camel]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return mapping.get(snake, default)


# -- the request -------------------------------------------------------------------------


def file_search_of(body: dict[str, Any]) -> dict[str, Any]:
    """Return the fileSearch tool's settings, or raise QueryError as the service would."""
    tools = pick(body, "tools", []) or []
    found: dict[str, Any] | None = None
    others = []
    for tool in tools:
        if not isinstance(tool, dict):
            raise QueryError(400, "Invalid JSON payload received. Expected an object in 'tools'.")
        search = pick(tool, "fileSearch")
        if search is not None:
            found = search
        others += [key for key in tool if key not in ("fileSearch", "file_search")]
    if found is None:
        raise QueryError(400, "The fake answers only with the fileSearch tool.")
    grounding = {"googleSearch", "google_search", "urlContext", "url_context"}
    if grounding & set(others):
        raise QueryError(
            400,
            "Built-in grounding tools cannot be combined: fileSearch with "
            f"{min(grounding & set(others))} is not supported.",
        )
    names = pick(found, "fileSearchStoreNames")
    if not names:
        raise QueryError(400, "file_search_store_names must be specified for the file search tool.")
    if len(names) > MAX_STORES:
        raise QueryError(
            400, f"At most {MAX_STORES} file search stores are allowed; got {len(names)}."
        )
    return {
        "stores": list(names),
        "top_k": int(pick(found, "topK", 5) or 5),
        "filter": pick(found, "metadataFilter"),
    }


def question_of(body: dict[str, Any]) -> str:
    """Return the text of the last user turn."""
    contents = pick(body, "contents", []) or []
    for content in reversed(contents):
        if content.get("role", "user") == "user":
            return " ".join(str(part.get("text", "")) for part in content.get("parts", []))
    return ""


# -- metadata_filter (AIP-160 subset, evaluated directly) ---------------------------------

_TOKENS = re.compile(
    r'\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|<=|>=|!=|[=<>:()]|-(?=[A-Za-z_(])'
    r'|[^\s=<>!:()"\']+)'
)


def compile_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """Return a predicate on {key: value} metadata, or raise QueryError(400)."""
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKENS.match(text, pos)
        if match is None:
            if text[pos:].strip():
                raise QueryError(400, f"Invalid metadata filter: {text!r}")
            break
        tokens.append(match.group(1))
        pos = match.end()
    state = {"i": 0}

    def peek() -> str | None:
        return tokens[state["i"]] if state["i"] < len(tokens) else None

    def take() -> str:
        token = peek()
        if token is None:
            raise QueryError(400, f"Invalid metadata filter (it ends early): {text!r}")
        state["i"] += 1
        return token

    def expression() -> Callable[[dict[str, Any]], bool]:
        parts = [sequence()]
        while peek() == "AND":
            take()
            parts.append(sequence())
        return lambda m: all(p(m) for p in parts)

    def sequence() -> Callable[[dict[str, Any]], bool]:
        parts = [factor()]
        while peek() not in (None, ")", "AND"):
            parts.append(factor())
        return lambda m: all(p(m) for p in parts)

    def factor() -> Callable[[dict[str, Any]], bool]:
        parts = [term()]
        while peek() == "OR":
            take()
            parts.append(term())
        return lambda m: any(p(m) for p in parts)

    def term() -> Callable[[dict[str, Any]], bool]:
        if peek() in ("NOT", "-"):
            take()
            inner = simple()
            return lambda m: not inner(m)
        return simple()

    def simple() -> Callable[[dict[str, Any]], bool]:
        token = take()
        if token == "(":
            inner = expression()
            if take() != ")":
                raise QueryError(400, f"Invalid metadata filter (unclosed '('): {text!r}")
            return inner
        op = take()
        if op not in ("=", "!=", "<", "<=", ">", ">=", ":"):
            raise QueryError(400, f"Invalid metadata filter near {token!r}: {text!r}")
        return restriction(token, op, literal(take()))

    predicate = expression()
    if peek() is not None:
        raise QueryError(400, f"Invalid metadata filter near {peek()!r}: {text!r}")
    return predicate


def literal(token: str) -> str | float:
    if token[:1] in ('"', "'"):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    try:
        return float(token)
    except ValueError:
        return token


def restriction(key: str, op: str, want: str | float) -> Callable[[dict[str, Any]], bool]:
    def test(metadata: dict[str, Any]) -> bool:  # noqa: PLR0911
        if op == "!=":
            return not restriction(key, "=", want)(metadata)
        if key not in metadata:
            return False
        have = metadata[key]
        if op == ":" and want == "*":
            return True
        if isinstance(have, list):
            return op in ("=", ":") and want in have
        if isinstance(have, str) != isinstance(want, str):
            return False
        compare = {"=": have == want, ":": have == want}
        if op in compare:
            return compare[op]
        return {"<": have < want, "<=": have <= want, ">": have > want, ">=": have >= want}[op]

    return test


def metadata_view(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Return {key: value} from camelCased customMetadata entries."""
    view: dict[str, Any] = {}
    for entry in entries:
        if "stringValue" in entry:
            view[entry["key"]] = entry["stringValue"]
        elif "numericValue" in entry:
            view[entry["key"]] = float(entry["numericValue"])
        elif "stringListValue" in entry:
            view[entry["key"]] = list(entry["stringListValue"].get("values", []))
    return view


# -- retrieval and the answer --------------------------------------------------------------


def terms_of(question: str) -> set[str]:
    return {w for w in re.findall(r"\w+", question.lower()) if len(w) >= 3 and w not in _STOP}


def chunks_of(text: str) -> list[str]:
    """Split a document's text at blank lines, then into pieces of at most CHUNK_CHARS."""
    pieces = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = " ".join(paragraph.split())
        while words:
            pieces.append(words[:CHUNK_CHARS])
            words = words[CHUNK_CHARS:]
    return pieces


def retrieve(
    documents: list[tuple[str, Any]], question: str, top_k: int
) -> list[tuple[str, Any, str]]:
    """Return up to top_k (store, document, chunk text) by distinct matching terms."""
    wanted = terms_of(question)
    scored = []
    for order, (store, doc) in enumerate(documents):
        for index, chunk in enumerate(chunks_of(doc.data.decode("utf-8", errors="replace"))):
            score = len(wanted & set(re.findall(r"\w+", chunk.lower())))
            if score:
                scored.append((-score, order, index, store, doc, chunk))
    scored.sort(key=lambda item: item[:3])
    return [(store, doc, chunk) for *_rank, store, doc, chunk in scored[:top_k]]


def first_sentence(text: str) -> str:
    match = re.match(r"(.{1,200}?[.!?])(\s|$)", text)
    return match.group(1) if match else text[:200]


def response_json(
    model: str,
    hits: list[tuple[str, Any, str]],
    *,
    grounded: bool,
    confidence: bool,
    metadata: bool = True,
) -> dict[str, Any]:
    """Return a generateContent response: an answer built from the hits, and its grounding."""
    candidate: dict[str, Any] = {"finishReason": "STOP", "index": 0}
    if not hits or not grounded:
        text = NO_ANSWER if not hits else "From general knowledge: it depends."
        candidate["content"] = {"parts": [{"text": text}], "role": "model"}
        return _wrap(model, candidate, len(text))
    sentences = [first_sentence(chunk) for _store, _doc, chunk in hits[:3]]
    answer = " ".join(sentences)
    supports = []
    offset = 0
    for index, sentence in enumerate(sentences):
        start, end = offset, offset + len(sentence.encode())
        segment: dict[str, Any] = {"endIndex": end, "text": sentence}
        if start:
            segment["startIndex"] = start  # proto3 leaves a 0 out
        support: dict[str, Any] = {"segment": segment, "groundingChunkIndices": [index]}
        if confidence:
            support["confidenceScores"] = [round(0.9 - 0.1 * index, 2)]
        supports.append(support)
        offset = end + 1  # the joining space
    chunks = []
    for store, doc, chunk in hits:
        context: dict[str, Any] = {
            "title": doc.display_name,
            "text": chunk,
            "fileSearchStore": store,
        }
        if doc.metadata and metadata:
            context["customMetadata"] = doc.metadata
        chunks.append({"retrievedContext": context})
    candidate["content"] = {"parts": [{"text": answer}], "role": "model"}
    candidate["groundingMetadata"] = {"groundingChunks": chunks, "groundingSupports": supports}
    return _wrap(model, candidate, len(answer))


def _wrap(model: str, candidate: dict[str, Any], length: int) -> dict[str, Any]:
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 12,
            "candidatesTokenCount": max(1, length // 4),
            "totalTokenCount": 12 + max(1, length // 4),
        },
        "modelVersion": model,
        "responseId": "fake-response",
    }
