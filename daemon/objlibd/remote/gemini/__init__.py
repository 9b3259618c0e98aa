"""The Gemini File Search backend, on the official google-genai SDK.

This package is the only place that imports `google.genai` (and `tenacity`): SDK types and
errors stop here and leave as `RemoteDoc` values and `objlibd.errors.Remote*` exceptions.
`store` is the backend, `calls` the call wrapper below, `convert` the pure translations.

Upload is the two-step pattern (the only way to attach custom metadata): Files API upload
→ wait until the File is ACTIVE → `importFile` with customMetadata → checkpoint the
operation name → poll the operation with a deadline → delete the temporary File.

Every SDK call goes through `calls.Caller`, which
* waits while the circuit breaker is open (and lets one probe through when half-open),
* takes a rate-limiter slot for the calls that create or delete things (file uploads,
  imports, store creation, document deletion; polls and reads are not quota-bearing),
* retries 408/429/5xx and transport failures with exponential backoff plus jitter,
  honouring the server's RetryInfo `retryDelay`, for at most `max_attempts` tries,
* records every answer on the breaker, and
* translates: storage quota → RemoteQuotaError at once; other 4xx → the caller decides
  (404 on delete is success, on upload it is RemoteRejectedError).

The SDK's own retries are switched off (`attempts=1`): we own retrying. The API key is
handed to the SDK and never kept, logged, or put in errors or `health()`.
"""

from objlibd.remote.gemini.store import GeminiStore, open_gemini

__all__ = ["GeminiStore", "open_gemini"]
