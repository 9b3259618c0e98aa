"""The Gemini File Search backend, on the official google-genai SDK.

This package is the only place that imports `google.genai` (and `tenacity`): SDK types and
errors stop here and leave as `RemoteDoc` values and `objlibd.errors.Remote*` exceptions.
`store` is the backend (the store's lifecycle, stats and health), `imports` gets files into it
(upload, import, resume), `documents` lists, looks up and deletes, `calls` is the call wrapper
below (`gate` its resizable upload semaphore), `convert` the pure translations.

Upload is the two-step pattern (the only way to attach custom metadata): Files API upload
→ wait until the File is ACTIVE → `importFile` with customMetadata → checkpoint the
operation name → poll the operation with a deadline → delete the temporary File.

Every SDK call goes through `calls.Caller`, which
* waits while the circuit breaker is open (and lets one probe through when half-open),
* takes a slot of the adaptive pace (`remote/pace.py`) for the quota-bearing calls that
  create or delete things (file uploads, imports, store creation, document deletion; polls,
  reads and temporary-file deletes carry no quota and take no slot); a quota 429 on such a
  call slows the pace and is sent again when the server's RetryInfo says, within the same
  attempt, counted by the pace and not by the breaker,
* retries 408/429/5xx and transport failures with exponential backoff plus jitter,
  honouring the server's RetryInfo `retryDelay`, for at most `max_attempts` tries,
* records every other answer on the breaker, and
* translates: storage quota → RemoteQuotaError at once; other 4xx → the caller decides
  (404 on delete is success, on upload it is RemoteRejectedError).

The SDK's own retries are switched off (`attempts=1`): we own retrying. The API key is
handed to the SDK and never kept, logged, or put in errors or `health()`.
"""

from objlibd.remote.gemini.store import GeminiStore, open_gemini

__all__ = ["GeminiStore", "open_gemini"]
