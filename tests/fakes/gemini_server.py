"""A protocol-faithful local fake of the Gemini Files + File Search REST API.

The real `google-genai` SDK runs against it unchanged (point `HttpOptions.base_url` at
`FakeGemini.base_url`). It follows `shared/reference/gemini-file-search.md` §9:

* both `/v1/` and `/v1beta/` (and `/upload/v1*/`), under any path prefix;
* resumable uploads: start answers 200 `{}` with an absolute lower-case `x-goog-upload-url`;
  every chunk answer (errors too) carries `X-Goog-Upload-Status`;
* files get/delete/list; fileSearchStores create/get/list/delete(force);
  `:importFile` and `:uploadToFileSearchStore` long-running operations; operations get
  (done after N polls or N seconds; optionally bare `documentName`); documents
  list (≤ 20 a page, ascending, never an empty page with a token)/get/delete(force);
* Google-shaped error JSON; the API key is checked on every call except chunk POSTs;
  camelCase and snake_case keys; `force=True|true`; > 20 metadata entries is a 400;
* `models/{m}:generateContent` (and `:streamGenerateContent?alt=sse`) with the `fileSearch`
  tool, answering from the stored documents' text (`gemini_query`); an imported document's
  display name is its File ID, as the real service's is.

A true request quota (`Quota`): at most `rpm` calls to the quota-bearing routes in any
sliding window (60 s, or shorter for fast tests), beyond which calls are refused with 429
RESOURCE_EXHAUSTED and a RetryInfo of the seconds until a slot frees; the client is never
told the limit. `quota_calls` / `quota_429s` count what it admitted and refused.

Faults are reproducible (a seeded `random.Random`): storms of 429 (with RetryInfo), 500,
503, hung connections closed without doing the request, and requests done whose answer is
lost (the connection reset after the work), at rates per route; added latency on every
call, operations that finish with an error, a storage quota, and N-shot injections for one
route (`inject`, `inject_hang` with mode "drop" / "reply" / "process_drop").

State is inspectable: `fake.lock` guards `fake.stores`, `fake.files`, `fake.operations`,
`fake.counts` (requests per route) and `fake.journal` (documents created and deleted, in
order); helpers return copies. `fake.on(route, hook)` runs a hook after a call was served
and before its reply goes out (a test can SIGKILL its client at exactly that point).
"""

from __future__ import annotations

import json
import random
import re
import socket
import string
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, unquote, urlsplit

from fakes import gemini_query

HangMode = Literal["drop", "reply", "process_drop"]

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "BAD_GATEWAY",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The service is currently unavailable.",
}
IMPORT_RESPONSE = "type.googleapis.com/google.ai.generativelanguage.v1main.ImportFileResponse"
UPLOAD_RESPONSE = (
    "type.googleapis.com/google.ai.generativelanguage.v1main.UploadToFileSearchStoreResponse"
)
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
MAX_METADATA = 20
CHUNK_GRANULARITY = "8388608"

# Route names (the keys of `counts`, `inject(route=...)` and `Faults.routes`).
ROUTES = (
    "files.upload",
    "files.upload.chunk",
    "files.get",
    "files.delete",
    "files.list",
    "stores.create",
    "stores.get",
    "stores.list",
    "stores.delete",
    "stores.importFile",
    "stores.uploadToFileSearchStore",
    "stores.uploadToFileSearchStore.chunk",
    "operations.get",
    "documents.list",
    "documents.get",
    "documents.delete",
    "models.generateContent",
    "models.streamGenerateContent",
)

_ROUTE_TABLE: tuple[tuple[str, str, str], ...] = (
    ("POST", r"upload/files", "files.upload"),
    ("POST", r"upload/fileSearchStores/(?P<store>[^/:]+):uploadToFileSearchStore",
     "stores.uploadToFileSearchStore"),
    ("GET", r"files", "files.list"),
    ("GET", r"files/(?P<file>[^/]+)", "files.get"),
    ("DELETE", r"files/(?P<file>[^/]+)", "files.delete"),
    ("POST", r"fileSearchStores", "stores.create"),
    ("GET", r"fileSearchStores", "stores.list"),
    ("GET", r"fileSearchStores/(?P<store>[^/:]+)", "stores.get"),
    ("DELETE", r"fileSearchStores/(?P<store>[^/:]+)", "stores.delete"),
    ("POST", r"fileSearchStores/(?P<store>[^/:]+):importFile", "stores.importFile"),
    ("GET", r"fileSearchStores/(?P<store>[^/]+)/operations/(?P<op>[^/]+)", "operations.get"),
    ("GET", r"fileSearchStores/(?P<store>[^/]+)/upload/operations/(?P<op>[^/]+)",
     "operations.get"),
    ("GET", r"fileSearchStores/(?P<store>[^/]+)/documents", "documents.list"),
    ("GET", r"fileSearchStores/(?P<store>[^/]+)/documents/(?P<doc>[^/]+)", "documents.get"),
    ("DELETE", r"fileSearchStores/(?P<store>[^/]+)/documents/(?P<doc>[^/]+)",
     "documents.delete"),
    ("POST", r"models/(?P<model>[^/:]+):generateContent", "models.generateContent"),
    ("POST", r"models/(?P<model>[^/:]+):streamGenerateContent", "models.streamGenerateContent"),
)  # fmt: skip
# The calls a request quota counts: those that create or delete something (the client paces
# the same ones). Chunks, polls, gets, lists and temporary-file deletes carry no quota.
QUOTA_ROUTES = frozenset({
    "files.upload", "stores.importFile", "stores.create", "stores.uploadToFileSearchStore",
    "documents.delete",
})  # fmt: skip
_VERSIONED = re.compile(r"^.*?/(?P<upload>upload/)?(?P<ver>v1beta|v1)/(?P<rest>.*)$")


# -- configuration --------------------------------------------------------------------


@dataclass
class Faults:
    """Random fault storm: each call draws once against these rates (in this order).

    The kinds are the real service's: 429 (with RetryInfo) and 500/503 answered *without*
    doing the request; a hang that ends with the connection closed, the request *not* done
    (`rate_hang`, as `hang_mode` "drop"); and a request that *was done* but whose answer
    was lost, the connection reset after the work (`rate_lost`). `per_route` gives a route
    its own rates (the others keep these); operations can end in error (`op_error_rate`).
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_hang: float = 0.0
    rate_lost: float = 0.0
    hang_seconds: float = 2.0
    hang_mode: HangMode = "drop"
    latency_seconds: float = 0.0  # added to every call, faulty or not
    retry_delay: str | None = "1s"  # RetryInfo on 429s; None leaves it out
    routes: frozenset[str] | None = None  # None: every route
    per_route: dict[str, Faults] = field(default_factory=dict)
    op_error_rate: float = 0.0  # imports whose operation ends with `error`
    op_error_message: str = "Failed to count tokens."


@dataclass
class Quota:
    """A true request quota: at most `rpm` quota-bearing calls in any sliding window.

    Google counts requests per minute; `window_seconds` shrinks the window for fast tests,
    and `clock` lets a test run the fake and the client on one compressed clock (RetryInfo
    is in that clock's seconds). Refused calls are not done and take no slot.
    """

    rpm: int
    window_seconds: float = 60.0
    routes: frozenset[str] = QUOTA_ROUTES
    clock: Callable[[], float] = time.monotonic


@dataclass
class Behaviour:
    """How the fake service behaves when nothing goes wrong."""

    api_key: str | None = "test-key"  # None: accept any key
    op_polls_to_done: int = 1  # operations.get calls until done (1: the first poll)
    op_seconds_to_done: float | None = None  # or done after this long, polled or not
    bare_document_name: bool = False  # ImportFileResponse with bare ids, as seen live
    upload_op_omits_done: bool = True  # the uploadToFileSearchStore finalize body
    file_processing_polls: int = 0  # files.get calls a new File stays PROCESSING
    storage_limit_bytes: int | None = None  # 429 "Corpus has reached the storage limit"
    failed_import_keeps_document: bool = False  # else the pending document vanishes
    models: frozenset[str] = gemini_query.MODELS  # models that serve File Search
    grounding: bool = True  # False: the model answers from its own knowledge, citing nothing
    confidence_scores: bool = True  # supports carry confidenceScores
    chunk_metadata: bool = True  # False: grounding chunks without customMetadata (old SDKs)
    canned_answer: dict[str, Any] | None = None  # generateContent answers this verbatim


@dataclass
class Fault:
    """One fault to apply to one call."""

    kind: Literal["error", "hang"]
    status: int = 0
    message: str = ""
    retry_delay: str | None = None
    hang_seconds: float = 0.0
    hang_mode: HangMode = "drop"


@dataclass
class Injection:
    """An N-shot fault for one route."""

    route: str
    fault: Fault
    remaining: int


# -- state ----------------------------------------------------------------------------


@dataclass
class FakeFile:
    name: str
    display_name: str
    mime_type: str
    data: bytes
    create_time: datetime
    state: str = "ACTIVE"
    processing_polls: int = 0
    fails: bool = False


@dataclass
class FakeDocument:
    name: str
    display_name: str
    metadata: list[dict[str, Any]]
    size: int
    mime_type: str
    create_time: datetime
    seq: int
    state: str = "STATE_PENDING"
    data: bytes = b""  # the text that generateContent searches


@dataclass
class FakeStore:
    name: str
    display_name: str
    create_time: datetime
    seq: int
    embedding_model: str = ""
    documents: dict[str, FakeDocument] = field(default_factory=dict)


@dataclass
class FakeOperation:
    name: str
    store: str
    document: str
    created: float
    upload: bool = False
    polls: int = 0
    done: bool = False
    error: dict[str, Any] | None = None
    fail_message: str | None = None


@dataclass
class UploadSession:
    id: str
    kind: Literal["file", "store"]
    version: str
    size: int
    mime_type: str
    meta: dict[str, Any]
    store: str = ""
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Call:
    """One request, parsed."""

    method: str
    route: str
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    version: str

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.") from None
        if not isinstance(value, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        return value


@dataclass
class Reply:
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    raw: bytes | None = None  # sent as is (server-sent events) instead of `body` as JSON


class ApiError(Exception):
    """A Google-shaped error reply."""

    def __init__(
        self, code: int, message: str, status: str = "", details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error["status"] = self.status
        if self.details:
            error["details"] = self.details
        return {"error": error}


class DroppedError(Exception):
    """The connection is to be closed without a reply."""


# -- small helpers --------------------------------------------------------------------


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def pick(mapping: dict[str, Any], camel: str, default: Any = None) -> Any:
    """Return mapping[camel] or mapping[snake_case(camel)]: the SDK sends both spellings."""
    if camel in mapping:
        return mapping[camel]
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return mapping.get(snake, default)


def slug(text: str, limit: int = 27) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "", text.lower())[:limit]
    return cleaned or "doc"


def retry_info(delay: str | None) -> list[dict[str, Any]]:
    if delay is None:
        return []
    return [{"@type": RETRY_INFO, "retryDelay": delay}]


def parse_metadata(raw: Any) -> list[dict[str, Any]]:
    """Validate customMetadata (≤ 20 entries, one value each); return it camelCased."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ApiError(400, "Invalid value at 'custom_metadata': expected a list.")
    if len(raw) > MAX_METADATA:
        raise ApiError(400, f"custom_metadata has {len(raw)} entries; at most 20 are allowed.")
    return [_metadata_entry(entry) for entry in raw]


def _metadata_entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise ApiError(400, "Request contains an invalid argument.")
    values = {
        name: pick(entry, name)
        for name in ("stringValue", "numericValue", "stringListValue")
        if pick(entry, name) is not None
    }
    if len(values) != 1:
        raise ApiError(400, f"custom_metadata {entry['key']!r} needs exactly one value.")
    ((name, value),) = values.items()
    if name == "stringListValue":
        value = {"values": list(pick(value, "values", []))}
    return {"key": entry["key"], name: value}


def page_of(
    items: list[Any], query: dict[str, str], default: int, cap: int
) -> tuple[list[Any], str | None]:
    """Return one page (by `seq`, ascending) and the token for the next, if any."""
    size = int(pick(query, "pageSize", default) or default)
    size = max(1, min(size, cap))
    token = pick(query, "pageToken", "")
    after = -1
    if token:
        if not re.fullmatch(r"after-\d+", token):
            raise ApiError(400, "Invalid page token.")
        after = int(token.removeprefix("after-"))
    rest = [item for item in items if item.seq > after]
    page = rest[:size]
    more = len(rest) > size
    return page, (f"after-{page[-1].seq}" if more else None)


# -- the fake service -----------------------------------------------------------------


class FakeGemini:
    """The fake service: a ThreadingHTTPServer on 127.0.0.1:0 in a background thread."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        quota: Quota | None = None,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.faults = faults or Faults()
        self.quota = quota
        self.quota_calls = 0  # quota-bearing calls admitted
        self.quota_429s = 0  # quota-bearing calls refused by the quota
        self._quota_window: deque[float] = deque()
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.stores: dict[str, FakeStore] = {}
        self.files: dict[str, FakeFile] = {}
        self.operations: dict[str, FakeOperation] = {}
        self.sessions: dict[str, UploadSession] = {}
        self.counts: Counter[str] = Counter()
        self.listings = 0  # documents.list calls without a page token: full listings begun
        self.in_flight = 0  # requests being served right now (a dead client's included)
        self.faults_applied: Counter[str] = Counter()
        self.injections: list[Injection] = []
        self.failing_names: set[str] = set()  # display names whose imports always fail
        self.failing_files = 0  # how many of the next uploaded Files end FAILED
        self.journal: list[tuple[str, str]] = []  # ("created"|"deleted", document name)
        self.hooks: dict[str, list[Callable[[Call], None]]] = {}
        self._seq = 0
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[Call], Reply]] = {
            "files.upload": self._files_upload_start,
            "files.upload.chunk": self._upload_chunk,
            "files.get": self._files_get,
            "files.delete": self._files_delete,
            "files.list": self._files_list,
            "stores.create": self._stores_create,
            "stores.get": self._stores_get,
            "stores.list": self._stores_list,
            "stores.delete": self._stores_delete,
            "stores.importFile": self._import_file,
            "stores.uploadToFileSearchStore": self._store_upload_start,
            "stores.uploadToFileSearchStore.chunk": self._upload_chunk,
            "operations.get": self._operations_get,
            "documents.list": self._documents_list,
            "documents.get": self._documents_get,
            "documents.delete": self._documents_delete,
            "models.generateContent": self._generate,
            "models.streamGenerateContent": self._generate,
        }

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeGemini:
        self._stop.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- test controls -----------------------------------------------------------------

    def inject(
        self,
        route: str,
        status: int = 429,
        times: int = 1,
        message: str = "",
        retry_delay: str | None = None,
    ) -> None:
        """Make the next `times` calls to `route` fail with `status`."""
        self._check_route(route)
        fault = Fault("error", status, message or DEFAULT_MESSAGES.get(status, "Error."))
        fault.retry_delay = retry_delay
        with self.lock:
            self.injections.append(Injection(route, fault, times))

    def inject_hang(
        self, route: str, seconds: float, times: int = 1, mode: HangMode = "drop"
    ) -> None:
        """Hold the next `times` calls to `route` for `seconds`, then drop or reply."""
        self._check_route(route)
        fault = Fault("hang", hang_seconds=seconds, hang_mode=mode)
        with self.lock:
            self.injections.append(Injection(route, fault, times))

    def fail_imports_of(self, display_name: str) -> None:
        """Make every import of a file with this display name end with an op error."""
        with self.lock:
            self.failing_names.add(display_name)

    def on(self, route: str, hook: Callable[[Call], None]) -> None:
        """Run `hook(call)` after a call to `route` was served, before the reply goes out."""
        self._check_route(route)
        with self.lock:
            self.hooks.setdefault(route, []).append(hook)

    def fail_next_files(self, times: int = 1) -> None:
        """Make the next `times` uploaded Files go PROCESSING, then FAILED."""
        with self.lock:
            self.failing_files += times

    def count(self, route: str) -> int:
        with self.lock:
            return self.counts[route]

    def documents(self, store: str | None = None) -> list[dict[str, Any]]:
        """Return copies of the documents (of one store, or all), oldest first."""
        with self.lock:
            self._advance_operations()
            stores = [self.stores[store]] if store else list(self.stores.values())
            docs = [doc for s in stores for doc in s.documents.values()]
            return [self._document_view(doc) for doc in sorted(docs, key=lambda d: d.seq)]

    def store_names(self) -> dict[str, str]:
        """Return {resource name: display name} of every store."""
        with self.lock:
            return {name: store.display_name for name, store in self.stores.items()}

    def file_names(self) -> list[str]:
        with self.lock:
            return sorted(self.files)

    def _check_route(self, route: str) -> None:
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)}")

    @staticmethod
    def _document_view(doc: FakeDocument) -> dict[str, Any]:
        metadata = {
            entry["key"]: next(v for k, v in entry.items() if k != "key") for entry in doc.metadata
        }
        return {
            "name": doc.name,
            "display_name": doc.display_name,
            "metadata": metadata,
            "state": doc.state,
            "size": doc.size,
            "mime_type": doc.mime_type,
        }

    # -- request pipeline --------------------------------------------------------------

    def handle(self, handler: _Handler, method: str) -> None:
        """Serve one request: route, count, authenticate, apply faults, answer."""
        call = self._parse(handler, method)
        if call is None:
            self._send(handler, ApiError(404, "Method not found.").body(), 404, {})
            return
        with self.lock:
            self.counts[call.route] += 1
            if call.route == "documents.list" and not pick(call.query, "pageToken"):
                self.listings += 1
            self.in_flight += 1
        upload_headers = {"X-Goog-Upload-Status": "final"} if "upload" in call.route else {}
        try:
            reply = self._serve(call)
        except ApiError as err:
            self._send(handler, err.body(), err.code, upload_headers)
        except DroppedError:
            handler.close_connection = True
        else:
            self._send(handler, reply.body, reply.status, reply.headers, reply.raw)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _serve(self, call: Call) -> Reply:
        if not call.route.endswith(".chunk"):
            self._authenticate(call)
        self._pause(self.faults.latency_seconds)
        self._take_quota_slot(call.route)
        fault = self._pick_fault(call.route)
        if fault is not None and fault.kind == "error":
            raise ApiError(fault.status, fault.message, details=retry_info(fault.retry_delay))
        if fault is not None:
            self._pause(fault.hang_seconds)
            if fault.hang_mode == "drop":
                raise DroppedError
        reply = self._dispatch(call)
        for hook in list(self.hooks.get(call.route, ())):
            hook(call)
        if fault is not None and fault.hang_mode == "process_drop":
            raise DroppedError
        return reply

    def _dispatch(self, call: Call) -> Reply:
        with self.lock:
            self._advance_operations()
            return self._handlers[call.route](call)

    def _parse(self, handler: _Handler, method: str) -> Call | None:
        parts = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        match = _VERSIONED.match(unquote(parts.path))
        if match is None:
            return None
        rest = ("upload/" if match["upload"] else "") + match["rest"]
        found = self._route(method, rest)
        if found is None:
            return None
        route, params = found
        if route.startswith(("files.upload", "stores.upload")) and "upload_id" in query:
            route += ".chunk"
        headers = {key.lower(): value for key, value in handler.headers.items()}
        return Call(method, route, params, query, headers, body, match["ver"])

    @staticmethod
    def _route(method: str, rest: str) -> tuple[str, dict[str, str]] | None:
        for verb, pattern, route in _ROUTE_TABLE:
            if verb != method:
                continue
            match = re.fullmatch(pattern, rest)
            if match:
                return route, match.groupdict()
        return None

    def _authenticate(self, call: Call) -> None:
        expected = self.behaviour.api_key
        given = call.headers.get("x-goog-api-key") or call.query.get("key")
        if expected is None:
            return
        if not given:
            raise ApiError(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to "
                "call this API.",
            )
        if given != expected:
            detail = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
            }
            raise ApiError(400, "API key not valid. Please pass a valid API key.", details=[detail])

    def _take_quota_slot(self, route: str) -> None:
        """Admit a quota-bearing call into the window, or refuse it with when to come back."""
        quota = self.quota
        if quota is None or route not in quota.routes:
            return
        with self.lock:
            now = quota.clock()
            window = self._quota_window
            while window and window[0] <= now - quota.window_seconds:
                window.popleft()
            if len(window) < quota.rpm:
                window.append(now)
                self.quota_calls += 1
                return
            self.quota_429s += 1
            delay = window[0] + quota.window_seconds - now
        raise ApiError(429, DEFAULT_MESSAGES[429], details=retry_info(f"{delay:.3f}s"))

    def _pick_fault(self, route: str) -> Fault | None:
        with self.lock:
            for injection in self.injections:
                if injection.route == route and injection.remaining > 0:
                    injection.remaining -= 1
                    self.faults_applied[f"{route}:{injection.fault.status or 'hang'}"] += 1
                    return injection.fault
            return self._storm_fault(route)

    def _storm_fault(self, route: str) -> Fault | None:
        faults = self.faults.per_route.get(route, self.faults)
        if faults.routes is not None and route not in faults.routes:
            return None
        draw = self.rng.random()
        for rate, status in (
            (faults.rate_429, 429),
            (faults.rate_500, 500),
            (faults.rate_503, 503),
        ):
            if draw < rate:
                self.faults_applied[f"{route}:{status}"] += 1
                return Fault("error", status, DEFAULT_MESSAGES[status], faults.retry_delay)
            draw -= rate
        if draw < faults.rate_hang:
            self.faults_applied[f"{route}:hang"] += 1
            return Fault("hang", hang_seconds=faults.hang_seconds, hang_mode=faults.hang_mode)
        draw -= faults.rate_hang
        if draw < faults.rate_lost:
            self.faults_applied[f"{route}:lost"] += 1
            return Fault("hang", hang_seconds=0.0, hang_mode="process_drop")
        return None

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    @staticmethod
    def _send(
        handler: _Handler,
        body: dict[str, Any],
        status: int,
        headers: dict[str, str],
        raw: bytes | None = None,
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        headers = dict(headers)
        content_type = headers.pop("Content-Type", "application/json; charset=UTF-8")
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    # -- ids and lookups (lock held) ---------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _random_id(self, length: int = 12) -> str:
        return "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=length))

    def _store(self, store_id: str) -> FakeStore:
        store = self.stores.get(f"fileSearchStores/{store_id}")
        if store is None:
            raise ApiError(404, "Requested entity was not found.")
        return store

    def _document(self, call: Call) -> FakeDocument:
        store = self._store(call.params["store"])
        doc = store.documents.get(f"{store.name}/documents/{call.params['doc']}")
        if doc is None:
            raise ApiError(404, "Requested entity was not found.")
        return doc

    # -- files -------------------------------------------------------------------------

    def _files_upload_start(self, call: Call) -> Reply:
        meta = pick(call.json(), "file", {}) or {}
        return self._start_session(call, "file", meta)

    def _store_upload_start(self, call: Call) -> Reply:
        store = self._store(call.params["store"])
        return self._start_session(call, "store", call.json(), store.name)

    def _start_session(
        self, call: Call, kind: Literal["file", "store"], meta: dict[str, Any], store: str = ""
    ) -> Reply:
        if call.headers.get("x-goog-upload-command", "").lower() != "start":
            raise ApiError(400, "Missing X-Goog-Upload-Command: start.")
        size = int(call.headers.get("x-goog-upload-header-content-length", "0"))
        mime = call.headers.get("x-goog-upload-header-content-type", "")
        mime = pick(meta, "mimeType") or mime
        session = UploadSession(self._random_id(24), kind, call.version, size, mime, meta, store)
        self.sessions[session.id] = session
        target = "files" if kind == "file" else f"{store}:uploadToFileSearchStore"
        url = (
            f"{self.base_url}/upload/{call.version}/{target}"
            f"?upload_id={session.id}&upload_protocol=resumable"
        )
        headers = {
            "x-goog-upload-url": url,
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-Chunk-Granularity": CHUNK_GRANULARITY,
        }
        return Reply({}, headers)

    def _upload_chunk(self, call: Call) -> Reply:
        session = self.sessions.get(call.query["upload_id"])
        if session is None:
            raise ApiError(404, "Upload session not found or already terminated.")
        offset = int(call.headers.get("x-goog-upload-offset", "-1"))
        if offset != len(session.data):
            raise ApiError(400, f"Invalid upload offset {offset}; expected {len(session.data)}.")
        session.data.extend(call.body)
        command = call.headers.get("x-goog-upload-command", "").lower()
        if "finalize" not in command:
            return Reply({}, {"X-Goog-Upload-Status": "active"})
        del self.sessions[session.id]
        if len(session.data) != session.size:
            raise ApiError(400, f"Uploaded {len(session.data)} bytes; declared {session.size}.")
        body = self._finish_file(session) if session.kind == "file" else self._finish_store(session)
        return Reply(body, {"X-Goog-Upload-Status": "final"})

    def _finish_file(self, session: UploadSession) -> dict[str, Any]:
        name = pick(session.meta, "name") or f"files/{self._random_id()}"
        if name in self.files:
            raise ApiError(409, f"File {name} already exists.")
        processing = self.behaviour.file_processing_polls
        fails = self.failing_files > 0
        if fails:
            self.failing_files -= 1
            processing = max(processing, 1)
        file = FakeFile(
            name=name,
            display_name=pick(session.meta, "displayName", "") or "",
            mime_type=session.mime_type,
            data=bytes(session.data),
            create_time=now_utc(),
            state="PROCESSING" if processing else "ACTIVE",
            processing_polls=processing,
            fails=fails,
        )
        self.files[name] = file
        return {"file": self._file_json(file, session.version)}

    def _finish_store(self, session: UploadSession) -> dict[str, Any]:
        store = self.stores.get(session.store)
        if store is None:
            raise ApiError(404, "Requested entity was not found.")
        display = pick(session.meta, "displayName", "") or self._random_id()
        metadata = parse_metadata(pick(session.meta, "customMetadata"))
        self._check_quota(len(session.data))
        doc = self._new_document(store, display, metadata, len(session.data), session.mime_type)
        doc.data = bytes(session.data)
        op = self._new_operation(store, doc, upload=True)
        return self._operation_json(op)

    def _file_json(self, file: FakeFile, version: str = "v1beta") -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": file.name,
            "mimeType": file.mime_type,
            "sizeBytes": str(len(file.data)),
            "createTime": rfc3339(file.create_time),
            "updateTime": rfc3339(file.create_time),
            "expirationTime": rfc3339(file.create_time + timedelta(hours=48)),
            "uri": f"{self.base_url}/{version}/{file.name}",
            "state": file.state,
            "source": "UPLOADED",
        }
        if file.display_name:
            body["displayName"] = file.display_name
        if file.state == "FAILED":
            body["error"] = {"code": 3, "message": "File processing failed."}
        return body

    def _files_get(self, call: Call) -> Reply:
        file = self.files.get(f"files/{call.params['file']}")
        if file is None:
            raise ApiError(404, "Requested entity was not found.")
        if file.state == "PROCESSING":
            file.processing_polls -= 1
            if file.processing_polls <= 0:
                file.state = "FAILED" if file.fails else "ACTIVE"
        return Reply(self._file_json(file, call.version))

    def _files_delete(self, call: Call) -> Reply:
        if self.files.pop(f"files/{call.params['file']}", None) is None:
            raise ApiError(404, "Requested entity was not found.")
        return Reply({})

    def _files_list(self, call: Call) -> Reply:
        ordered = sorted(self.files.values(), key=lambda f: f.create_time)
        size = max(1, min(int(pick(call.query, "pageSize", 10) or 10), 100))
        start = int(pick(call.query, "pageToken", "0") or 0)
        page = ordered[start : start + size]
        body: dict[str, Any] = {"files": [self._file_json(f, call.version) for f in page]}
        if start + size < len(ordered):
            body["nextPageToken"] = str(start + size)
        return Reply(body)

    # -- stores ------------------------------------------------------------------------

    def _stores_create(self, call: Call) -> Reply:
        body = call.json()
        display = pick(body, "displayName", "") or ""
        name = f"fileSearchStores/{slug(display)}-{self._random_id()}"
        model = pick(body, "embeddingModel", "") or ""
        store = FakeStore(name, display, now_utc(), self._next_seq(), model)
        self.stores[name] = store
        return Reply(self._store_json(store))

    def _store_json(self, store: FakeStore) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": store.name,
            "createTime": rfc3339(store.create_time),
            "updateTime": rfc3339(store.create_time),
        }
        if store.display_name:
            body["displayName"] = store.display_name
        if store.embedding_model:
            body["embeddingModel"] = store.embedding_model
        counts = Counter(doc.state for doc in store.documents.values())
        for state, key in (
            ("STATE_ACTIVE", "activeDocumentsCount"),
            ("STATE_PENDING", "pendingDocumentsCount"),
            ("STATE_FAILED", "failedDocumentsCount"),
        ):
            if counts[state]:
                body[key] = str(counts[state])
        size = sum(doc.size for doc in store.documents.values())
        if size:
            body["sizeBytes"] = str(size)
        return body

    def _stores_get(self, call: Call) -> Reply:
        return Reply(self._store_json(self._store(call.params["store"])))

    def _stores_list(self, call: Call) -> Reply:
        stores = sorted(self.stores.values(), key=lambda s: s.seq)
        page, token = page_of(stores, call.query, default=10, cap=20)
        body: dict[str, Any] = {"fileSearchStores": [self._store_json(s) for s in page]}
        if token:
            body["nextPageToken"] = token
        return Reply(body)

    def _stores_delete(self, call: Call) -> Reply:
        store = self._store(call.params["store"])
        if store.documents and not parse_bool(call.query.get("force")):
            raise ApiError(400, "Cannot delete non-empty FileSearchStore", "FAILED_PRECONDITION")
        del self.stores[store.name]
        return Reply({})

    # -- import and operations ---------------------------------------------------------

    def _import_file(self, call: Call) -> Reply:
        store = self._store(call.params["store"])
        body = call.json()
        file_name = pick(body, "fileName", "")
        file = self.files.get(file_name)
        if file is None:
            raise ApiError(404, f"File {file_name} not found.")
        if file.state != "ACTIVE":
            raise ApiError(
                400, f"File {file_name} is not in an ACTIVE state.", "FAILED_PRECONDITION"
            )
        metadata = parse_metadata(pick(body, "customMetadata"))
        self._check_quota(len(file.data))
        # As live (reference §4, [CB]): an imported document is titled with the File ID,
        # whatever display name the File had.
        display = file.name.removeprefix("files/")
        doc = self._new_document(store, display, metadata, len(file.data), file.mime_type)
        doc.data = file.data
        op = self._new_operation(store, doc, upload=False)
        return Reply(self._operation_json(op))

    def _check_quota(self, adding: int) -> None:
        limit = self.behaviour.storage_limit_bytes
        if limit is None:
            return
        used = sum(doc.size for s in self.stores.values() for doc in s.documents.values())
        if used + adding > limit:
            raise ApiError(429, f"Corpus has reached the storage limit of {limit} bytes.")

    def _new_document(
        self,
        store: FakeStore,
        display: str,
        metadata: list[dict[str, Any]],
        size: int,
        mime_type: str,
    ) -> FakeDocument:
        name = f"{store.name}/documents/{slug(display)}-{self._random_id()}"
        doc = FakeDocument(name, display, metadata, size, mime_type, now_utc(), self._next_seq())
        store.documents[name] = doc
        self.journal.append(("created", name))
        return doc

    def _new_operation(self, store: FakeStore, doc: FakeDocument, upload: bool) -> FakeOperation:
        kind = "upload/operations" if upload else "operations"
        name = f"{store.name}/{kind}/{self._random_id()}"
        op = FakeOperation(name, store.name, doc.name, time.monotonic(), upload)
        if self._import_fails(doc):
            op.fail_message = self.faults.op_error_message
        self.operations[name] = op
        return op

    def _import_fails(self, doc: FakeDocument) -> bool:
        paths = {e.get("stringValue") for e in doc.metadata if e["key"] == "path"}
        if doc.display_name in self.failing_names or paths & self.failing_names:
            return True
        rate = self.faults.op_error_rate
        return bool(rate) and self.rng.random() < rate

    def _operations_get(self, call: Call) -> Reply:
        store = f"fileSearchStores/{call.params['store']}"
        op = self.operations.get(f"{store}/operations/{call.params['op']}") or self.operations.get(
            f"{store}/upload/operations/{call.params['op']}"
        )
        if op is None:
            raise ApiError(404, "Requested entity was not found.")
        op.polls += 1
        if not op.done and op.polls >= self.behaviour.op_polls_to_done:
            self._complete(op)
        return Reply(self._operation_json(op))

    def _advance_operations(self) -> None:
        seconds = self.behaviour.op_seconds_to_done
        if seconds is None:
            return
        now = time.monotonic()
        for op in self.operations.values():
            if not op.done and now - op.created >= seconds:
                self._complete(op)

    def _complete(self, op: FakeOperation) -> None:
        op.done = True
        store = self.stores.get(op.store)
        doc = store.documents.get(op.document) if store else None
        if op.fail_message is None:
            if doc is not None:
                doc.state = "STATE_ACTIVE"
            return
        op.error = {"code": 3, "message": op.fail_message}
        if doc is not None and store is not None:
            if self.behaviour.failed_import_keeps_document:
                doc.state = "STATE_FAILED"
            else:
                del store.documents[doc.name]
                self.journal.append(("deleted", doc.name))

    def _operation_json(self, op: FakeOperation) -> dict[str, Any]:
        body: dict[str, Any] = {"name": op.name}
        if op.error is not None:
            body["done"] = True
            body["error"] = op.error
            return body
        if op.done:
            body["done"] = True
            body["response"] = self._operation_response(op)
        elif op.upload and self.behaviour.upload_op_omits_done:
            body["response"] = self._operation_response(op)  # as captured live: no `done`
        return body

    def _operation_response(self, op: FakeOperation) -> dict[str, Any]:
        parent, document = op.store, op.document
        if self.behaviour.bare_document_name:
            parent = parent.removeprefix("fileSearchStores/")
            document = document.rsplit("/", 1)[-1]
        kind = UPLOAD_RESPONSE if op.upload else IMPORT_RESPONSE
        return {"@type": kind, "parent": parent, "documentName": document}

    # -- generateContent with File Search -----------------------------------------------

    def _generate(self, call: Call) -> Reply:
        model = call.params["model"]
        if model not in self.behaviour.models:
            raise ApiError(
                404,
                f"models/{model} is not found for API version {call.version}, or is not "
                "supported for generateContent. Call ListModels to see the list of available "
                "models and their supported methods.",
            )
        body = call.json()
        try:
            search = gemini_query.file_search_of(body)
            wanted = None
            if search["filter"]:
                wanted = gemini_query.compile_filter(str(search["filter"]))
        except gemini_query.QueryError as err:
            raise ApiError(err.code, err.message) from None
        documents = []
        for name in search["stores"]:
            store = self.stores.get(name)
            if store is None:
                raise ApiError(400, f"File search store {name} does not exist.")
            for doc in sorted(store.documents.values(), key=lambda d: d.seq):
                view = gemini_query.metadata_view(doc.metadata)
                if doc.state == "STATE_ACTIVE" and (wanted is None or wanted(view)):
                    documents.append((store.name, doc))
        hits = gemini_query.retrieve(documents, gemini_query.question_of(body), search["top_k"])
        reply = self.behaviour.canned_answer or gemini_query.response_json(
            model,
            hits,
            grounded=self.behaviour.grounding,
            confidence=self.behaviour.confidence_scores,
            metadata=self.behaviour.chunk_metadata,
        )
        if call.route == "models.streamGenerateContent":
            event = b"data: " + json.dumps(reply).encode() + b"\r\n\r\n"
            return Reply({}, {"Content-Type": "text/event-stream"}, raw=event)
        return Reply(reply)

    # -- documents ---------------------------------------------------------------------

    def _document_json(self, doc: FakeDocument) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": doc.name,
            "createTime": rfc3339(doc.create_time),
            "updateTime": rfc3339(doc.create_time),
            "state": doc.state,
            "sizeBytes": str(doc.size),
            "mimeType": doc.mime_type,
        }
        if doc.display_name:
            body["displayName"] = doc.display_name
        if doc.metadata:
            body["customMetadata"] = doc.metadata
        return body

    def _documents_list(self, call: Call) -> Reply:
        store = self._store(call.params["store"])
        docs = sorted(store.documents.values(), key=lambda d: d.seq)
        page, token = page_of(docs, call.query, default=10, cap=20)
        body: dict[str, Any] = {"documents": [self._document_json(d) for d in page]}
        if token:
            body["nextPageToken"] = token
        return Reply(body)

    def _documents_get(self, call: Call) -> Reply:
        return Reply(self._document_json(self._document(call)))

    def _documents_delete(self, call: Call) -> Reply:
        doc = self._document(call)
        if doc.state == "STATE_ACTIVE" and not parse_bool(call.query.get("force")):
            raise ApiError(400, "Cannot delete non-empty Document", "FAILED_PRECONDITION")
        store = self._store(call.params["store"])
        del store.documents[doc.name]
        self.journal.append(("deleted", doc.name))
        return Reply({})


# -- HTTP plumbing --------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle plus delayed
        # ACKs add ~40 ms to every call.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self.server.app.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.app.handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.app.handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read state, not access logs."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: FakeGemini) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.app = app

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished (killed, timed out) is normal here; anything else is not."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)
