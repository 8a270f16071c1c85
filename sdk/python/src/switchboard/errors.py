"""Errors: one exception class per error code of the API.

Every class derives from :class:`SwitchboardError`, which carries the ``code``,
``message``, ``details`` and HTTP ``status`` the server answered, and the id of the
invocation or job the error belongs to. A code this version does not know maps to
:class:`SwitchboardError` itself, so a newer server never breaks an older client.

Handlers served by a :class:`switchboard.Worker` may raise :class:`InvalidInput` (or
any class here) to answer with that code instead of ``function_error``.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadOutput",
    "CallDepthExceeded",
    "Cancelled",
    "Conflict",
    "Forbidden",
    "FunctionError",
    "Internal",
    "InvalidInput",
    "InvalidModule",
    "LeaseExpired",
    "LimitExceeded",
    "MethodNotAllowed",
    "NoWorker",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RequestTimeout",
    "Sealed",
    "SwitchboardError",
    "Timeout",
    "Unauthenticated",
    "Unreachable",
    "error_from",
]


class SwitchboardError(Exception):
    """An error answered by the server (or, for :class:`Unreachable`, no answer)."""

    code: ClassVar[str] = "unknown"
    status: int

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
        invocation_id: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            # An instance of the base class keeps the code the server sent.
            self.code = code  # type: ignore[misc]
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.status = status if status is not None else _STATUS.get(self.code, 0)
        self.invocation_id = invocation_id
        self.job_id = job_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.status})"


class Unauthenticated(SwitchboardError):
    """No token, or one the server does not accept (expired, revoked, unknown)."""

    code = "unauthenticated"


class Forbidden(SwitchboardError):
    """The token may not do this."""

    code = "forbidden"


class Sealed(SwitchboardError):
    """A sealed dataset: functions may read it, nobody may download it."""

    code = "sealed"


class NotFound(SwitchboardError):
    """No such function, version, job, blob or profile (or not visible to you)."""

    code = "not_found"


class MethodNotAllowed(SwitchboardError):
    code = "method_not_allowed"


class RequestTimeout(SwitchboardError):
    """The request's body arrived too slowly."""

    code = "request_timeout"


class InvalidInput(SwitchboardError):
    """The input does not match the function's input schema (``details`` says where)."""

    code = "invalid_input"


class InvalidModule(SwitchboardError):
    code = "invalid_module"


class Conflict(SwitchboardError):
    code = "conflict"


class PayloadTooLarge(SwitchboardError):
    code = "payload_too_large"


class FunctionError(SwitchboardError):
    """The function failed (a non-zero exit, a trap, an exception in a handler)."""

    code = "function_error"

    @property
    def stderr_tail(self) -> str:
        """The last lines the function wrote to stderr (for Python handlers, the
        traceback)."""
        tail = self.details.get("stderr_tail", "")
        return tail if isinstance(tail, str) else ""


class LimitExceeded(SwitchboardError):
    """Memory, output or another per-call limit was exceeded."""

    code = "limit_exceeded"


class BadOutput(SwitchboardError):
    """The function answered with output its output schema refuses."""

    code = "bad_output"


class WorkerLost(SwitchboardError):
    """The worker running the call went away before answering."""

    code = "worker_lost"


class LeaseExpired(SwitchboardError):
    """A job's attempt was lost with the server running it."""

    code = "lease_expired"


class Cancelled(SwitchboardError):
    code = "cancelled"


class NoWorker(SwitchboardError):
    """No connected worker can run the function now."""

    code = "no_worker"


class CallDepthExceeded(SwitchboardError):
    """A nested call would go deeper than the call tree allows (a function calling
    itself without end, or too long a chain); ``details["chain"]`` names it."""

    code = "call_depth_exceeded"


class Overloaded(SwitchboardError):
    code = "overloaded"


class Timeout(SwitchboardError):
    """The call ran past its deadline."""

    code = "timeout"


class Refused(SwitchboardError):
    """A party of a federation refused a query under a disclosure rule
    (``details["rule"]``, ``details["party"]``); nothing was released."""

    code = "refused"


class Aborted(SwitchboardError):
    """A federated query stopped before its result (``details["party"]``,
    ``details["reason"]``); nothing was released."""

    code = "aborted"


class Internal(SwitchboardError):
    code = "internal"


class Unreachable(SwitchboardError):
    """The server could not be reached (refused, reset, DNS, TLS) or did not answer
    in time. Not an error code of the API: ``status`` is 0."""

    code = "unreachable"


_CLASSES: dict[str, type[SwitchboardError]] = {
    cls.code: cls
    for cls in (
        Unauthenticated,
        Forbidden,
        Sealed,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        InvalidInput,
        InvalidModule,
        Conflict,
        PayloadTooLarge,
        FunctionError,
        LimitExceeded,
        BadOutput,
        WorkerLost,
        LeaseExpired,
        Cancelled,
        NoWorker,
        CallDepthExceeded,
        Overloaded,
        Timeout,
        Refused,
        Aborted,
        Internal,
    )
}

_STATUS: dict[str, int] = {
    "invalid_input": 400,
    "invalid_module": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "sealed": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "payload_too_large": 413,
    "function_error": 422,
    "limit_exceeded": 422,
    "refused": 422,
    "cancelled": 499,
    "internal": 500,
    "bad_output": 502,
    "worker_lost": 502,
    "lease_expired": 502,
    "aborted": 502,
    "no_worker": 503,
    "overloaded": 503,
    "call_depth_exceeded": 508,
    "timeout": 504,
}


def error_from(
    body: Any,
    *,
    status: int | None = None,
    invocation_id: str | None = None,
    job_id: str | None = None,
) -> SwitchboardError:
    """The exception for an API error body ``{"code", "message", "details"}``."""
    if not isinstance(body, dict):
        body = {"code": "internal", "message": f"an answer that is not an API error: {body!r}"}
    code = str(body.get("code", "internal"))
    message = str(body.get("message", ""))
    details = body.get("details")
    cls = _CLASSES.get(code)
    kwargs: dict[str, Any] = {
        "details": details if isinstance(details, dict) else {},
        "status": status,
        "invocation_id": invocation_id,
        "job_id": job_id,
    }
    if cls is None:
        return SwitchboardError(message, code=code, **kwargs)
    return cls(message, **kwargs)
