"""The call wrapper: every SDK call under the circuit breaker, the adaptive pace and retries.

See the package docstring for the policy. Failures leave as `TransientError` (retried here,
then `RemoteUnavailableError`), `RemoteQuotaError`, or `RefusedError` for the caller to judge.
A quota 429 on a paced call is the pace's business (`remote/pace.py`): it slows down, holds
until the server's RetryInfo, and the call is sent again within the same attempt; only a
refusal the pace cannot absorb (at its floor) reaches the breaker and the retry policy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import httpx2
import structlog
import tenacity
from google.genai import errors as genai_errors

from objlibd.config import GeminiSettings
from objlibd.credentials import API_KEY_ENV
from objlibd.errors import (
    RemoteQuotaError,
    RemoteRejectedError,
    RemoteStoppedError,
    RemoteUnavailableError,
    RemoteUncertainError,
)
from objlibd.remote.breaker import BreakerSettings, CircuitBreaker, State, concurrency_for
from objlibd.remote.gemini.gate import Gate
from objlibd.remote.pace import Pace, Ticket
from objlibd.remote.ratelimit import TIER_RPM

log = structlog.get_logger("objlibd.remote.gemini")

T = TypeVar("T")

TRANSIENT_CODES = frozenset({408, 429, 500, 502, 503, 504})
# A 429 is the service refusing at the door: the request was not done. Any other transient
# answer (5xx, 408) may come after the work was done, as may a connection that broke once
# the request was out; only a connection that never opened is as clean as a 429.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)
BREAKER_POLL_CAP_SECONDS = 5.0
POLL_FIRST_SECONDS = 0.5  # an operation's first poll; the interval doubles up to the setting
SERVER_DELAY_CAP_SECONDS = 3600.0  # a RetryInfo longer than this is not believed
_TRANSPORT_ERRORS = (httpx2.TransportError,)
# Upload-protocol hiccups the SDK raises as KeyError/ValueError (reference §2.1).
_UPLOAD_HICCUPS = ("Upload URL was not returned", "upload status is not finalized")

LearnedPace = Mapping[str, object]
SavePace = Callable[[dict[str, object]], None]


class TransientError(Exception):
    """One failed attempt that is worth retrying (if the call may be sent again)."""

    def __init__(self, summary: str, retry_delay: float | None, *, ambiguous: bool) -> None:
        super().__init__(summary)
        self.retry_delay = retry_delay
        self.ambiguous = ambiguous  # the server may have done the request


class RefusedError(Exception):
    """The server answered a definite no (4xx other than 408/429): the caller decides."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code


class Caller:
    """Runs SDK calls under the breaker, the pace and retries; shared by upload threads.

    Every wait (backoff, breaker, pace, and the store's polling through `pause`) is an
    `Event.wait` on `stop`: a shutdown cuts it short with RemoteStoppedError, and no call is
    started once `stop` is set. `learned` is the pace a previous run learned for this store;
    `save_pace` is called with what to persist whenever the pace changes (from whichever
    thread made the call; a failure to save is logged, never raised).
    """

    def __init__(
        self,
        settings: GeminiSettings,
        *,
        concurrency: int,
        clock: Callable[[], float],
        sleep: Callable[[float], object] | None,
        stop: threading.Event,
        labels: Callable[[], dict[str, object]],
        learned: LearnedPace | None = None,
        save_pace: SavePace | None = None,
    ) -> None:
        self._settings = settings
        self._stop = stop
        self._wait_for = sleep if sleep is not None else stop.wait
        self._labels = labels  # who is calling, for the breaker's log lines
        self._clock = clock
        # Since when every call failed without an answer (status: "store unreachable").
        self._failing: tuple[float, str] | None = None
        self.concurrency = concurrency
        self.gate = Gate(concurrency)
        self.pace = Pace(
            start_rpm(settings), clock, max_rpm=settings.rate_limit_max_rpm, learned=learned
        )
        self._save_pace = save_pace
        self._saved = self.pace.version
        self._save_lock = threading.Lock()
        self._waiting = 0  # callers sleeping for their pace slot right now
        breaker_settings = BreakerSettings(cooldown=settings.breaker_cooldown_seconds)
        self.breaker = CircuitBreaker(clock, breaker_settings, self._on_breaker)
        self._backoff = tenacity.wait_exponential_jitter(
            initial=settings.retry_initial_delay_seconds,
            max=settings.retry_max_delay_seconds,
            jitter=settings.retry_initial_delay_seconds,
        )

    def pause(self, seconds: float) -> None:
        """Wait `seconds` unless objlibd is stopping (then raise RemoteStoppedError)."""
        self.check_stop()
        self._wait_for(seconds)
        self.check_stop()

    def failing(self) -> tuple[float, str] | None:
        """Return (seconds since the first unanswered failure, its last error) or None.

        Any answer from the service (a success, a refusal, a 429) ends the run of failures;
        only calls that got no answer (connection errors, timeouts, 5xx) extend it.
        """
        found = self._failing
        return None if found is None else (self._clock() - found[0], found[1])

    def _unanswered(self, error: str) -> None:
        since = self._failing[0] if self._failing is not None else self._clock()
        self._failing = (since, error[:300])

    def check_stop(self) -> None:
        """Raise RemoteStoppedError once a shutdown was asked for."""
        if self._stop.is_set():
            raise RemoteStoppedError(
                "objlibd is stopping: the Gemini call was not sent",
                hint="the work is parked and resumed at the next start",
            )

    def __call__(
        self, what: str, send: Callable[[], T], *, gated: bool = False, idempotent: bool = True
    ) -> T:
        """Run one SDK call under breaker, limiter and retries; see the package docstring.

        A call that is not `idempotent` (it creates something) is sent again only after an
        answer that proves it was not done (429, or a connection that never opened); after
        any other failure it raises RemoteUncertainError instead of risking a second one.
        """
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._settings.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(
                lambda err: isinstance(err, TransientError) and (idempotent or not err.ambiguous)
            ),
            sleep=self.pause,
            before_sleep=lambda state: _log_retry(what, state),
            reraise=True,
        )
        try:
            result: T = retrying(self._attempt, send, gated)
        except TransientError as err:
            if err.ambiguous and not idempotent:
                raise RemoteUncertainError(
                    f"Gemini {what} failed after it was sent ({err}): it may have been done"
                ) from None
            raise RemoteUnavailableError(
                f"Gemini {what} did not succeed in {self._settings.max_attempts} attempts; last error: {err}",
                hint="the service is busy or unreachable; the next sync tries again",
            ) from None
        return result

    def _attempt(self, send: Callable[[], T], gated: bool) -> T:
        self._wait_for_breaker()
        while True:
            ticket = self._pace_slot() if gated else None
            self.check_stop()
            try:
                result = self._send(send)
            except genai_errors.APIError as err:
                if ticket is not None and self._absorbed(err, ticket):
                    continue  # the pace slowed down and held: a new slot, the same attempt
                raise self._api_failure(err) from None
            if ticket is not None:
                self.pace.succeeded(ticket)
                self._remember_pace()
            self.breaker.record_success()
            self._failing = None
            return result

    def _send(self, send: Callable[[], T]) -> T:
        """Send once; SDK answers (APIError) pass through, other failures are judged here."""
        try:
            return send()
        except genai_errors.APIError:
            raise
        except _TRANSPORT_ERRORS as err:
            self.breaker.record_error()
            self._unanswered(f"{type(err).__name__}: {err}")
            ambiguous = not isinstance(err, _NOT_SENT)
            raise TransientError(
                f"{type(err).__name__}: {err}", None, ambiguous=ambiguous
            ) from None
        except (KeyError, ValueError) as err:
            self.breaker.record_error()
            if any(hint.lower() in str(err).lower() for hint in _UPLOAD_HICCUPS):
                raise TransientError(str(err), None, ambiguous=True) from None
            raise
        except BaseException:
            self.breaker.record_error()  # frees a half-open probe slot
            raise

    def _pace_slot(self) -> Ticket:
        """Wait for a slot of the pace; one made stale by a hold meanwhile is asked again."""
        while True:
            ticket = self.pace.reserve()
            if ticket.wait > 0:
                self._count_waiting(+1)
                try:
                    self.pause(ticket.wait)
                finally:
                    self._count_waiting(-1)
            if self.pace.valid(ticket):
                return ticket

    def _count_waiting(self, change: int) -> None:
        with self._save_lock:
            self._waiting += change

    def rate_limit(self) -> dict[str, object]:
        """Return the pace as the rate limit status shows it: rpm, calls, waits."""
        pace = self.pace.snapshot()
        with self._save_lock:
            waiting = self._waiting
        return {"rpm": pace["rpm"], "calls": pace["calls"], "waited_seconds": pace["waited_s"],
                "waiting": waiting}  # fmt: skip

    def _absorbed(self, err: genai_errors.APIError, ticket: Ticket) -> bool:
        """Hand a quota 429 to the pace; True if it absorbed it (a pacing signal)."""
        if int(err.code or 0) != 429 or is_storage_quota(err):
            return False
        self._failing = None  # an answer: the service is there
        before = self.pace.rpm
        delay = retry_delay(err)
        absorbed = self.pace.refused(ticket, delay)
        if self.pace.rpm < before:
            structlog.get_logger("objlibd.remote.gemini").info(
                "remote.pace.slowed", rpm=round(self.pace.rpm, 1), was=round(before, 1),
                retry_delay=delay, **self._labels(),
            )  # fmt: skip
        self._remember_pace()
        return absorbed

    def _remember_pace(self) -> None:
        """Persist the pace through `save_pace` if it changed since the last save."""
        with self._save_lock:
            version = self.pace.version
            if self._save_pace is None or version == self._saved:
                return
            self._saved = version
            try:
                self._save_pace(self.pace.learned())
            except Exception as err:  # noqa: BLE001 - losing a pace must not fail an upload
                log.warning("remote.pace.save_failed", error=str(err))

    def _api_failure(self, err: genai_errors.APIError) -> Exception:
        code = int(err.code or 0)
        summary = f"{code} {err.status}: {err.message}"
        if code in TRANSIENT_CODES and code != 429:
            self._unanswered(summary)
        else:
            self._failing = None  # an answer: the service is there
        if code == 429 and is_storage_quota(err):
            self.breaker.record_error()
            return RemoteQuotaError(
                f"the Gemini File Search store is full: {err.message}",
                hint="delete documents or raise the storage tier; uploads stop until then",
            )
        if code in TRANSIENT_CODES:
            if code == 429:
                self.breaker.record_429()
            else:
                self.breaker.record_error()
            return TransientError(summary, retry_delay(err), ambiguous=code != 429)
        self.breaker.record_success()  # a definite answer: the server is not throttling
        return RefusedError(code, str(err.status), str(err.message))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Back off exponentially; a longer RetryInfo from the server wins (never a shorter one)."""
        backoff = float(self._backoff(state))
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientError) and error.retry_delay is not None:
            return max(backoff, min(error.retry_delay, SERVER_DELAY_CAP_SECONDS))
        return backoff

    def _wait_for_breaker(self) -> None:
        while not self.breaker.allow():
            pause = min(self.breaker.retry_after(), BREAKER_POLL_CAP_SECONDS)
            self.pause(max(pause, 0.01))

    def _on_breaker(self, state: State, snapshot: dict[str, object]) -> None:
        event = {
            "open": "remote.breaker.opened",
            "half_open": "remote.breaker.half_open",
            "closed": "remote.breaker.closed",
        }[state]
        self.gate.set_limit(concurrency_for(state, self.concurrency))
        details = {key: value for key, value in snapshot.items() if key != "state"}
        # A fresh logger each time: transitions are rare, and this honours the logging
        # configuration in force now (a cached module logger would not).
        structlog.get_logger("objlibd.remote.gemini").warning(event, **self._labels(), **details)


def poll_delays(cap: float, first: float = POLL_FIRST_SECONDS) -> Iterator[float]:
    """Yield the waits between polls: `first`, doubling, never more than `cap`."""
    delay = min(first, cap)
    while True:
        yield delay
        delay = min(delay * 2, cap)


def start_rpm(settings: GeminiSettings) -> float:
    """Return the configured starting pace: `rate_limit_rpm` if set, else the tier's number."""
    if settings.rate_limit_rpm > 0:
        return settings.rate_limit_rpm
    return float(TIER_RPM[settings.rate_limit_tier])


def is_storage_quota(err: genai_errors.APIError) -> bool:
    """Return True for the 'Corpus has reached the storage limit' kind of 429."""
    return "storage limit" in str(err.message or "").lower()


def retry_delay(err: genai_errors.APIError) -> float | None:
    """Return RetryInfo.retryDelay from a Google error body, in seconds, if present."""
    body = err.details if isinstance(err.details, dict) else {}
    inner = body.get("error")
    error: dict[str, object] = inner if isinstance(inner, dict) else body
    details = error.get("details")
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            return parse_duration(detail.get("retryDelay"))
    return None


def parse_duration(value: object) -> float | None:
    """Parse a protobuf Duration string like '28s' or '0.5s' (None if not one)."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(float(value[:-1]), 0.0)
    except ValueError:
        return None


def refusal(what: str, err: RefusedError) -> RemoteRejectedError:
    hint = ""
    if err.code in (400, 401, 403) and "key" in str(err).lower():
        hint = f"check the Gemini API key ({API_KEY_ENV} or `objlibd key set`)"
    return RemoteRejectedError(f"{what}: {err}", hint=hint)


def _log_retry(what: str, state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    log.info("remote.retry", call=what, attempt=state.attempt_number, delay=delay, error=str(error))
