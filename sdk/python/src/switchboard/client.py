"""The synchronous client: the catalog as Python callables, durable jobs as futures,
and blobs.

>>> from switchboard import Client
>>> sb = Client()
>>> add = sb.catalog.alice.add
>>> add(a=1, b=2)
{'sum': 3}
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import os
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from typing import IO, Any

import httpx

from . import _codec, _core
from .errors import NotFound, SwitchboardError

__all__ = ["Blobs", "Catalog", "Client", "Function", "Job", "Namespace"]


class Client(_core.ClientBase):
    """A connection to one Switchboard server.

    ``url`` and ``token`` default to what the ``swb`` CLI would use (``SWB_URL`` /
    ``SWB_TOKEN``, the file ``swb login`` writes, ``./.swb/admin.token``,
    ``http://127.0.0.1:7070``). Connections are kept alive and reused; close the
    client (or use it as a context manager) to release them. ``timeout`` bounds
    every request but calls (which wait for their deadline); inputs larger than
    ``max_body_bytes`` travel as blobs.
    """

    def _open(self) -> None:
        self._http = httpx.Client(**self._settings)
        self.catalog = Catalog(self)
        self.blobs = Blobs(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- requests --------------------------------------------------------------------

    def _send(self, request: _core.Request) -> httpx.Response:
        """Sends ``request``, retrying only where that cannot repeat a side effect."""
        delays = _core.backoff()
        while True:
            try:
                response = self._http.send(request.build(self._http))
            except httpx.TransportError as e:
                delay = next(delays, None)
                if delay is None or not _core.retry_after_error(request, e):
                    raise _core.unreachable(request, self.url, e) from None
            else:
                delay = next(delays, None) if _core.retry_after_answer(request, response) else None
                if delay is None:
                    return response
            time.sleep(delay)

    def _json(self, request: _core.Request) -> Any:
        return _core.check(self._send(request)).json()

    # ---- functions -------------------------------------------------------------------

    def function(self, name: str) -> Function:
        """The catalog function ``namespace/name`` (yours or shared with you)."""
        detail = self._json(_core.Request("GET", _core.function_path(name), idempotent=True))
        return Function(self, name, detail["active"]["interface"])

    def functions(self) -> list[dict[str, Any]]:
        """Every function you may see: ``function``, ``kind``, ``active_version``,
        ``description``."""
        listed: list[dict[str, Any]] = self._json(
            _core.Request("GET", "/v1/functions", idempotent=True)
        )["functions"]
        return listed

    def invoke(self, name: str, input: Any = None, **options: Any) -> Any:
        """Calls ``name`` with ``input`` and returns its output (JSON decoded)."""
        return self._invoke(name, input, _core.Options(**options))

    def _invoke(self, name: str, input: Any, options: _core.Options) -> Any:
        body = _codec.dumps(input)
        if len(body) > self.max_body_bytes:
            # Too large for a request body: the input goes as a blob, read by a job.
            return self._submit(name, input, options, encoded=body).result()
        return _core.invoke_result(self._send(_core.invoke_request(name, body, options)))

    # ---- jobs ------------------------------------------------------------------------

    def submit(self, name: str, input: Any = None, **options: Any) -> Job:
        """Submits a durable job; see :meth:`Function.submit`."""
        call_options, extra = _core.submit_options(options)
        return self._submit(name, input, call_options, **extra)

    def _submit(self, name: str, input: Any, options: _core.Options, **extra: Any) -> Job:
        job = _core.Submission(name, input, options, self.max_body_bytes, **extra)
        request = job.request
        if job.upload is not None:
            request = job.uploaded(self.blobs.put(job.upload)["digest"])
        assert request is not None
        return self._accepted(request, [job.body])[0]

    def _submit_bodies(self, bodies: list[dict[str, Any]]) -> list[Job]:
        return self._accepted(_core.submit_request(bodies), bodies)

    def _accepted(self, request: _core.Request, bodies: list[dict[str, Any]]) -> list[Job]:
        accepted = self._json(request)["jobs"]
        return [
            Job(self, a["id"], body["function"]) for a, body in zip(accepted, bodies, strict=True)
        ]

    def job(self, job_id: str) -> Job:
        """Reattaches to a job by id (from any process)."""
        state = self._json(_core.job_request(job_id))
        job = Job(self, job_id, state["function"])
        job._update(state)
        return job

    def jobs(
        self, *, function: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[Job]:
        """Your jobs, newest first."""
        listed = self._json(_core.jobs_request(function, status, limit))
        jobs = []
        for state in listed["jobs"]:
            job = Job(self, state["id"], state["function"])
            job._update(state)
            jobs.append(job)
        return jobs


class Catalog:
    """The functions you may call: ``catalog.alice.add``, ``catalog["alice/add"]``,
    ``catalog.alice["not-an-identifier"]`` (and ``getattr(catalog, "a-team")`` for
    such a namespace). Attribute access completes with Tab."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _names(self) -> list[str]:
        return [f["function"] for f in self._client.functions()]

    def __getattr__(self, namespace: str) -> Namespace:
        if namespace.startswith("_"):
            raise AttributeError(namespace)
        return Namespace(self._client, namespace)

    def __getitem__(self, name: str) -> Function:
        return self._client.function(name)

    def __dir__(self) -> list[str]:
        return sorted({n.split("/")[0] for n in self._names()})

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __repr__(self) -> str:
        return f"<catalog of {self._client.url}>"


class Namespace:
    """One namespace of the catalog; its functions are attributes (or items)."""

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self._name = name

    def _names(self) -> list[str]:
        prefix = self._name + "/"
        return [
            f["function"][len(prefix) :]
            for f in self._client.functions()
            if f["function"].startswith(prefix)
        ]

    def __getattr__(self, name: str) -> Function:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except NotFound as e:
            close = difflib.get_close_matches(name, self._names(), n=1)
            hint = f" (did you mean {self._name}/{close[0]}?)" if close else ""
            raise AttributeError(f"{self._name}/{name} is not in your catalog{hint}") from e

    def __getitem__(self, name: str) -> Function:
        return self._client.function(f"{self._name}/{name}")

    def __dir__(self) -> list[str]:
        return sorted(n for n in self._names() if n.isidentifier())

    def __repr__(self) -> str:
        return f"<namespace {self._name}>"


class Function(_core.FunctionBase):
    """A catalog function as a Python callable.

    Keyword arguments are the properties of its input schema (``inspect.signature``
    and ``help()`` show them); one positional argument is the whole input instead.
    ``version=``, ``profile=`` and ``timeout=`` (seconds) choose how it runs, unless
    the schema has a property of that name: then use :meth:`options`.
    """

    _client: Client

    # A descriptor, so that pydoc documents it as a routine (its own signature and
    # docstring) rather than as an instance of this class.
    def __get__(self, obj: object, owner: type | None = None) -> Function:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        input, options = self._split(args, kwargs)
        return self._client._invoke(self.name, input, options)

    def submit(
        self,
        *args: Any,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> Job:
        """Submits a durable job with this input; returns at once with its :class:`Job`.

        With ``idempotency_key``, submitting again returns the same job."""
        input, options = self._split(args, kwargs)
        return self._client._submit(
            self.name, input, options, idempotency_key=idempotency_key, max_attempts=max_attempts
        )

    def map(
        self,
        inputs: Iterable[Any],
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> Generator[Any, None, None]:
        """Submits one job per input (in batches) and yields their results in order;
        raises the first failed job's error when its turn comes."""
        jobs: list[Job] = []
        for batch in _core.batches(self._job_bodies(inputs, max_attempts)):
            jobs.extend(self._client._submit_bodies(batch))
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in jobs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield job.result(timeout=left)


class Job(_core.JobBase, concurrent.futures.Future[Any]):
    """A durable job, usable as a :class:`concurrent.futures.Future` and awaitable.

    ``result()`` long-polls the server (it never sleeps between polls) and raises the
    job's error as its exception class; Ctrl-C interrupts it at once. ``status``,
    ``attempts`` and ``error`` are as of the last answer; :meth:`refresh` asks again.
    """

    def __init__(self, client: Client, job_id: str, function: str) -> None:
        concurrent.futures.Future.__init__(self)
        _core.JobBase.__init__(self, client, job_id, function)
        self._settle = threading.Lock()
        self._watching = False
        # concurrent.futures.wait and as_completed register here: then watch.
        self._waiters = _Waiters(self)

    @property
    def error(self) -> SwitchboardError | None:
        """The error of the last attempt, if any."""
        ok, value = _core.job_outcome(self.state) if self.state.get("error") else (True, None)
        return None if ok else value

    def _update(self, state: dict[str, Any]) -> None:
        self.state = state
        if state["status"] not in _core.FINAL:
            return
        with self._settle:
            if super().done():
                return
            if state["status"] == "cancelled":
                super().cancel()
                self.set_running_or_notify_cancel()
                return
            ok, value = _core.job_outcome(state)
            if ok:
                self.set_result(value)
            else:
                self.set_exception(value)

    def refresh(self) -> dict[str, Any]:
        """Reads the job's state now."""
        self._update(self._client._json(_core.job_request(self.id)))
        return self.state

    def _wait(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not super().done():
            left = _core.LONG_POLL_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return
            self._update(self._client._json(_core.job_request(self.id, wait_s=max(1, left))))
            if deadline is not None and deadline - time.monotonic() < 1 and not super().done():
                # The server waits in whole seconds: one last look.
                self.refresh()
                return

    def result(self, timeout: float | None = None) -> Any:
        """The job's result, waiting up to ``timeout`` seconds (forever if None; the
        server ends every job). Raises :class:`concurrent.futures.TimeoutError` if it
        has not ended, the job's error if it failed, and
        :class:`concurrent.futures.CancelledError` if it was cancelled."""
        self._wait(timeout)
        return super().result(timeout=0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return super().exception(timeout=0)

    def done(self) -> bool:
        if not super().done():
            self.refresh()
        return super().done()

    def running(self) -> bool:
        return not self.done() and self.status == "running"

    def cancelled(self) -> bool:
        return self.done() and super().cancelled()

    def cancel(self) -> bool:
        """Cancels the job (a running attempt is stopped); False if it had ended."""
        state = self._client._json(_core.Request("POST", f"/v1/jobs/{self.id}/cancel"))
        if state["status"] not in _core.FINAL:
            # A running attempt stops within moments: wait for it.
            state = self._client._json(_core.job_request(self.id, wait_s=_core.CANCEL_WAIT_S))
        self._update(state)
        return bool(super().cancelled())

    def add_done_callback(self, fn: Any) -> None:
        """Calls ``fn(job)`` when the job ends (a thread long-polls for it)."""
        super().add_done_callback(fn)
        self._watch()

    def _watch(self) -> None:
        """Long-polls the job on a thread of its own until it ends, so that callbacks
        and ``concurrent.futures.wait``/``as_completed`` see it end."""
        with self._settle:
            if self._watching or super().done():
                return
            self._watching = True
        threading.Thread(target=self._wait, args=(None,), daemon=True).start()

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.get_running_loop().run_in_executor(None, self.result).__await__()


class _Waiters(list[Any]):
    """A job's waiters: ``concurrent.futures.wait`` and ``as_completed`` add one, and
    the job starts watching the server (nothing else would tell it it ended)."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self._job = job

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        self._job._watch()


class Blobs:
    """Blobs: bytes kept on the server for jobs to read (``input_blob``) or results
    too large to inline. Sealed blobs (datasets) are readable by functions only."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def put(
        self,
        data: bytes | str | os.PathLike[str] | IO[bytes],
        *,
        sealed: bool = False,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Uploads bytes, a file (by path) or a binary file object; returns its
        ``digest``, ``name``, ``size``, ``sealed`` and ``created_at``. ``name`` is
        what listings call it (by default a file's name)."""
        info: dict[str, Any] = self._client._json(_core.blob_put(data, sealed, name))
        return info

    def get(self, digest: str) -> bytes:
        """A blob's bytes; :class:`~switchboard.errors.Sealed` for a dataset."""
        return _core.check(self._client._send(_core.blob_get(digest))).content

    def list(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self._client._json(_core.BLOB_LIST)["blobs"]
        return listed

    def delete(self, digest: str) -> None:
        _core.check(self._client._send(_core.blob_delete(digest)))
