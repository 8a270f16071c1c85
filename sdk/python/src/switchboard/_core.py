"""What the sync and the async client share: every request as data (method, path,
body, whether it is safe to retry), how answers turn into values or exceptions, and
how calls of a catalog function are prepared. No I/O here."""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from typing_extensions import Self

from . import _codec, _config, _schema
from .errors import Unreachable, error_from

#: Calls and jobs read these from the keyword arguments of a call, unless the
#: function's input schema has a property of that name (then use ``.options()``).
OPTIONS = ("version", "profile", "timeout")

#: Jobs one batch submission holds (the server's limit).
BATCH = 1000

#: The longest the server holds a job's long-poll open.
LONG_POLL_S = 30

#: How long cancelling a running job waits for its attempt to stop.
CANCEL_WAIT_S = 10

#: Default time limits, in seconds: connecting, and everything else of a request
#: other than a call (a call waits for its own deadline plus this).
CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 60.0

#: The server's default deadline of a call; a call's read timeout is its deadline
#: plus REQUEST_TIMEOUT.
DEFAULT_CALL_TIMEOUT = 15 * 60.0


@dataclass
class Request:
    """One API request, built without I/O."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    #: Safe to send again after a transport error or a 503 (GETs, idempotent
    #: submissions); a refused connection is retried for every request.
    idempotent: bool = False

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        timeout = httpx.Timeout(self.timeout or REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT)
        return http.build_request(
            self.method,
            self.path,
            params=self.params,
            content=self.content,
            headers=self.headers,
            timeout=timeout,
        )


def backoff(attempts: int = 4) -> Iterator[float]:
    """Delays between retries: 0.1 s doubling, each half fixed and half random."""
    delay = 0.1
    for _ in range(attempts):
        yield delay / 2 + random.random() * delay / 2
        delay *= 2


def retry_after_error(request: Request, error: httpx.TransportError) -> bool:
    """Whether a request that failed in transport may be sent again."""
    return isinstance(error, httpx.ConnectError) or request.idempotent


def retry_after_answer(request: Request, response: httpx.Response) -> bool:
    return request.idempotent and response.status_code == 503


def unreachable(request: Request, base: str, error: httpx.TransportError) -> Unreachable:
    what = (
        "did not answer in time"
        if isinstance(error, httpx.TimeoutException)
        else "cannot be reached"
    )
    return Unreachable(f"the server at {base} {what} ({request.method} {request.path}: {error})")


def check(response: httpx.Response, *, job_id: str | None = None) -> httpx.Response:
    """The response, or the exception its error body names."""
    if response.is_success:
        return response
    try:
        # Errors answer {"error": {"code", "message", "details"}}.
        body: Any = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        body = {
            "code": "internal",
            "message": f"HTTP {response.status_code}: {response.text[:200]}",
        }
    raise error_from(
        body,
        status=response.status_code,
        invocation_id=response.headers.get("swb-invocation-id"),
        job_id=job_id,
    )


def function_path(name: str) -> str:
    ns, sep, fn = name.partition("/")
    if not sep or not ns or not fn or "/" in fn:
        raise ValueError(f"a function is named namespace/name, not {name!r}")
    return f"/v1/functions/{ns}/{fn}"


# ---- calls -------------------------------------------------------------------------------


@dataclass
class Options:
    """How a call runs: a pinned version, a stored profile, a deadline in seconds."""

    version: int | None = None
    profile: str | None = None
    timeout: float | None = None

    def merged(self, **changes: Any) -> Options:
        return Options(**{**self.__dict__, **{k: v for k, v in changes.items() if v is not None}})


def invoke_request(name: str, body: bytes, options: Options) -> Request:
    params: dict[str, Any] = {}
    if options.version is not None:
        params["version"] = options.version
    if options.profile is not None:
        params["profile"] = options.profile
    if options.timeout is not None:
        params["timeout_ms"] = max(1, int(options.timeout * 1000))
    deadline = options.timeout or DEFAULT_CALL_TIMEOUT
    return Request(
        "POST",
        function_path(name) + "/invoke",
        params=params or None,
        content=body,
        headers={"content-type": "application/json"},
        # A call may wait as long as its deadline for a free worker, then run.
        timeout=2 * deadline + REQUEST_TIMEOUT,
    )


def invoke_result(response: httpx.Response) -> Any:
    check(response)
    return _codec.loads(response.content, response.headers.get("content-type"))


def job_body(
    name: str,
    input: Any = None,
    *,
    options: Options,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
) -> dict[str, Any]:
    """A job to submit; its input is encoded with the batch (:func:`submit_request`)."""
    body: dict[str, Any] = {"function": name, "input": input}
    for key, value in (
        ("version", options.version),
        ("profile", options.profile),
        ("idempotency_key", idempotency_key),
        ("max_attempts", max_attempts),
        ("timeout_ms", None if options.timeout is None else int(options.timeout * 1000)),
    ):
        if value is not None:
            body[key] = value
    return body


def submit_request(jobs: list[dict[str, Any]]) -> Request:
    # A batch where every job has a key may be sent again: the server returns the
    # same jobs.
    keyed = all("idempotency_key" in j for j in jobs)
    return Request(
        "POST",
        "/v1/jobs/batch",
        content=_codec.dumps({"jobs": jobs}),
        headers={"content-type": "application/json"},
        idempotent=keyed,
    )


def job_request(job_id: str, wait_s: float = 0) -> Request:
    wait = max(0, min(int(wait_s), LONG_POLL_S))
    return Request(
        "GET",
        f"/v1/jobs/{job_id}",
        params={"wait_s": wait} if wait else None,
        timeout=wait + REQUEST_TIMEOUT,
        idempotent=True,
    )


FINAL = ("succeeded", "failed", "cancelled")


def job_outcome(job: dict[str, Any]) -> tuple[bool, Any]:
    """``(True, result)`` for a succeeded job, ``(False, exception)`` for a failed one."""
    if job["status"] == "succeeded":
        return True, job.get("result")
    error = job.get("error") or {"code": "cancelled", "message": f"job {job['id']} was cancelled"}
    exc = error_from(error, job_id=job["id"])
    if job.get("stderr_tail") and "stderr_tail" not in exc.details:
        exc.details["stderr_tail"] = job["stderr_tail"]
    return False, exc


# ---- a catalog function's calling convention ----------------------------------------------


class Signature:
    """Turns a call's arguments into its input and options, as the function's input
    schema says."""

    def __init__(self, name: str, interface: dict[str, Any] | None) -> None:
        self.name = name
        self.interface = interface or {}
        schema = self.interface.get("input")
        self.object = _schema.is_object(schema)
        obj: dict[str, Any] = schema if _schema.is_object(schema) else {}
        self.properties: dict[str, Any] = obj.get("properties", {})
        self.required: list[str] = list(obj.get("required", []))
        self.closed = obj.get("additionalProperties") is False
        self.signature = inspect.Signature(_schema.parameters(schema))
        self.doc = _schema.docstring(name, self.interface)

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """``(input, options)``: one positional argument is the whole input;
        keywords are its properties."""
        options = {k: kwargs.pop(k) for k in OPTIONS if k in kwargs and k not in self.properties}
        if args:
            if len(args) > 1 or kwargs:
                raise TypeError(
                    f"{self.name}() takes its input as keywords, or as one positional value"
                )
            return args[0], options
        if self.object:
            missing = [r for r in self.required if r not in kwargs]
            if missing:
                raise TypeError(f"{self.name}() missing required argument(s): {', '.join(missing)}")
            unknown = [k for k in kwargs if k not in self.properties]
            if self.closed and unknown:
                raise TypeError(f"{self.name}() got unexpected argument(s): {', '.join(unknown)}")
        return kwargs, options


# ---- what the sync and async classes share -------------------------------------------


#: Inputs larger than this go to the server as a blob (a job reads it), not as a
#: request body: the server's default body limit.
MAX_BODY_BYTES = 64 << 20


class ClientBase:
    """The server, token and limits of a client; the HTTP client sends."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.url = _config.server_urls(url)[0]
        self.max_body_bytes = max_body_bytes
        self._settings: dict[str, Any] = {
            "base_url": self.url,
            "headers": {
                "authorization": f"Bearer {_config.token(token)}",
                "user-agent": "switchboard-python",
            },
            "timeout": httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
        }
        self._open()

    def _open(self) -> None:
        """Creates the HTTP client (sync or async) from ``self._settings``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def submit_options(options: dict[str, Any]) -> tuple[Options, dict[str, Any]]:
    """Splits ``submit(**options)`` into the call's options and the job's own."""
    extra: dict[str, Any] = {
        k: options.pop(k) for k in ("idempotency_key", "max_attempts") if k in options
    }
    return Options(**options), extra


class Submission:
    """One job to submit, as its request. When that request would be larger than a
    request body may be, the input is to be uploaded as a blob first (``upload``),
    then named with :meth:`uploaded`."""

    def __init__(
        self,
        name: str,
        input: Any,
        options: Options,
        max_body_bytes: int,
        *,
        encoded: bytes | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> None:
        self.body = job_body(
            name,
            input,
            options=options,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
        )
        self.upload: bytes | None = encoded
        self.request: Request | None = None
        if encoded is None:
            self.request = submit_request([self.body])
            assert self.request.content is not None
            if len(self.request.content) > max_body_bytes:
                self.upload = _codec.dumps(input)

    def uploaded(self, digest: str) -> Request:
        """The request naming the uploaded input instead of carrying it."""
        del self.body["input"]
        self.body["input_blob"] = digest
        return submit_request([self.body])


def batches(bodies: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(bodies), BATCH):
        yield bodies[start : start + BATCH]


class FunctionBase:
    """A catalog function: its name, interface, calling convention and options."""

    def __init__(
        self,
        client: Any,
        name: str,
        interface: dict[str, Any] | None,
        options: Options | None = None,
    ) -> None:
        self._client = client
        self.name = name
        self.interface: dict[str, Any] = interface or {}
        self._sig = Signature(name, interface)
        self._options = options or Options()
        self.__name__ = self.__qualname__ = name.split("/")[-1]
        self.__doc__ = self._sig.doc
        self.__signature__ = self._sig.signature

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{self.__signature__}>"

    def options(
        self,
        *,
        version: int | None = None,
        profile: str | None = None,
        timeout: float | None = None,
    ) -> Self:
        """This function with a pinned version, a stored profile or a deadline (s)."""
        merged = self._options.merged(version=version, profile=profile, timeout=timeout)
        return type(self)(self._client, self.name, self.interface, merged)

    def _split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Options]:
        input, options = self._sig.split(args, kwargs)
        return input, self._options.merged(**options)

    def _job_bodies(self, inputs: Iterable[Any], max_attempts: int | None) -> list[dict[str, Any]]:
        return [
            job_body(self.name, i, options=self._options, max_attempts=max_attempts) for i in inputs
        ]


class JobBase:
    """A job's id, function and last known state."""

    def __init__(self, client: Any, job_id: str, function: str) -> None:
        self._client = client
        self.id = job_id
        self.function = function
        self.state: dict[str, Any] = {"id": job_id, "function": function, "status": "queued"}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.function} {self.status}>"

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed or cancelled (as of the last answer)."""
        return str(self.state["status"])

    @property
    def attempts(self) -> int:
        return int(self.state.get("attempts", 0))


# ---- blobs and job listings -----------------------------------------------------------


def blob_data(data: bytes | str | os.PathLike[str] | IO[bytes]) -> bytes:
    """The bytes to upload: given, read from a path, or read from a binary file."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (str, os.PathLike)):
        return Path(data).read_bytes()
    return data.read()


def blob_put(
    data: bytes | str | os.PathLike[str] | IO[bytes], sealed: bool, name: str | None
) -> Request:
    """An upload of ``data`` (see :func:`blob_data`), named ``name`` in listings, by
    default a file's name."""
    params = {"sealed": "true" if sealed else "false"}
    if name is None and isinstance(data, (str, os.PathLike)):
        name = os.path.basename(os.fspath(data))
    if name is not None:
        params["name"] = name
    return Request(
        "POST",
        "/v1/blobs",
        params=params,
        content=blob_data(data),
        headers={"content-type": "application/octet-stream"},
    )


def blob_get(digest: str) -> Request:
    return Request("GET", f"/v1/blobs/{digest}", idempotent=True)


BLOB_LIST = Request("GET", "/v1/blobs", idempotent=True)


def blob_delete(digest: str) -> Request:
    return Request("DELETE", f"/v1/blobs/{digest}")


def jobs_request(function: str | None, status: str | None, limit: int) -> Request:
    params: dict[str, Any] = {"limit": limit}
    if function:
        params["function"] = function
    if status:
        params["status"] = status
    return Request("GET", "/v1/jobs", params=params, idempotent=True)
