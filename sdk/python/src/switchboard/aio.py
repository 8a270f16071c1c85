"""The asynchronous client: the same calls as :class:`switchboard.Client`, awaitable.

>>> from switchboard import AsyncClient
>>> async with AsyncClient() as sb:
...     add = await sb.function("alice/add")
...     await add(a=1, b=2)
...     job = await add.submit(a=1, b=2)
...     await job.result(timeout=60)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Generator, Iterable
from typing import IO, Any

import httpx

from . import _codec, _core
from .errors import SwitchboardError

__all__ = ["AsyncBlobs", "AsyncClient", "AsyncFunction", "AsyncJob"]


class AsyncClient(_core.ClientBase):
    """A connection to one Switchboard server, for asyncio code. ``url`` and
    ``token`` are found as for :class:`switchboard.Client`."""

    def _open(self) -> None:
        self._http = httpx.AsyncClient(**self._settings)
        self.catalog = AsyncCatalog(self)
        self.blobs = AsyncBlobs(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, request: _core.Request) -> httpx.Response:
        delays = _core.backoff()
        while True:
            try:
                response = await self._http.send(request.build(self._http))
            except httpx.TransportError as e:
                delay = next(delays, None)
                if delay is None or not _core.retry_after_error(request, e):
                    raise _core.unreachable(request, self.url, e) from None
            else:
                delay = next(delays, None) if _core.retry_after_answer(request, response) else None
                if delay is None:
                    return response
            await asyncio.sleep(delay)

    async def _json(self, request: _core.Request) -> Any:
        return _core.check(await self._send(request)).json()

    async def function(self, name: str) -> AsyncFunction:
        """The catalog function ``namespace/name``, with its signature and docstring."""
        detail = await self._json(_core.Request("GET", _core.function_path(name), idempotent=True))
        return AsyncFunction(self, name, detail["active"]["interface"])

    async def functions(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (
            await self._json(_core.Request("GET", "/v1/functions", idempotent=True))
        )["functions"]
        return listed

    async def invoke(self, name: str, input: Any = None, **options: Any) -> Any:
        return await self._invoke(name, input, _core.Options(**options))

    async def _invoke(self, name: str, input: Any, options: _core.Options) -> Any:
        body = _codec.dumps(input)
        if len(body) > self.max_body_bytes:
            return await (await self._submit(name, input, options, encoded=body)).result()
        return _core.invoke_result(await self._send(_core.invoke_request(name, body, options)))

    async def submit(self, name: str, input: Any = None, **options: Any) -> AsyncJob:
        call_options, extra = _core.submit_options(options)
        return await self._submit(name, input, call_options, **extra)

    async def _submit(
        self, name: str, input: Any, options: _core.Options, **extra: Any
    ) -> AsyncJob:
        job = _core.Submission(name, input, options, self.max_body_bytes, **extra)
        request = job.request
        if job.upload is not None:
            request = job.uploaded((await self.blobs.put(job.upload))["digest"])
        assert request is not None
        return (await self._accepted(request, [job.body]))[0]

    async def _submit_bodies(self, bodies: list[dict[str, Any]]) -> list[AsyncJob]:
        return await self._accepted(_core.submit_request(bodies), bodies)

    async def _accepted(
        self, request: _core.Request, bodies: list[dict[str, Any]]
    ) -> list[AsyncJob]:
        accepted = (await self._json(request))["jobs"]
        return [
            AsyncJob(self, a["id"], body["function"])
            for a, body in zip(accepted, bodies, strict=True)
        ]

    async def job(self, job_id: str) -> AsyncJob:
        state = await self._json(_core.job_request(job_id))
        job = AsyncJob(self, job_id, state["function"])
        job.state = state
        return job

    async def jobs(
        self, *, function: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[AsyncJob]:
        """Your jobs, newest first."""
        listed = await self._json(_core.jobs_request(function, status, limit))
        jobs = []
        for state in listed["jobs"]:
            job = AsyncJob(self, state["id"], state["function"])
            job.state = state
            jobs.append(job)
        return jobs


class AsyncBlobs:
    """Blobs, as :class:`switchboard.client.Blobs`, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def put(
        self,
        data: bytes | str | os.PathLike[str] | IO[bytes],
        *,
        sealed: bool = False,
        name: str | None = None,
    ) -> dict[str, Any]:
        info: dict[str, Any] = await self._client._json(_core.blob_put(data, sealed, name))
        return info

    async def get(self, digest: str) -> bytes:
        return _core.check(await self._client._send(_core.blob_get(digest))).content

    async def list(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (await self._client._json(_core.BLOB_LIST))["blobs"]
        return listed

    async def delete(self, digest: str) -> None:
        _core.check(await self._client._send(_core.blob_delete(digest)))


class AsyncCatalog:
    """``catalog.alice.add`` or ``catalog["alice/add"]``: an :class:`AsyncFunction`
    that takes keyword input (``await client.function(name)`` also loads its
    signature and docstring)."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def __getattr__(self, namespace: str) -> AsyncNamespace:
        if namespace.startswith("_"):
            raise AttributeError(namespace)
        return AsyncNamespace(self._client, namespace)

    def __getitem__(self, name: str) -> AsyncFunction:
        _core.function_path(name)  # namespace/name, or ValueError now
        return AsyncFunction(self._client, name, None)


class AsyncNamespace:
    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self._name = name

    def __getattr__(self, name: str) -> AsyncFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> AsyncFunction:
        return AsyncFunction(self._client, f"{self._name}/{name}", None)


class AsyncFunction(_core.FunctionBase):
    """A catalog function whose calls are awaited; see :class:`switchboard.Function`."""

    _client: AsyncClient

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        input, options = self._split(args, kwargs)
        return await self._client._invoke(self.name, input, options)

    async def submit(
        self,
        *args: Any,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
        **kwargs: Any,
    ) -> AsyncJob:
        input, options = self._split(args, kwargs)
        return await self._client._submit(
            self.name, input, options, idempotency_key=idempotency_key, max_attempts=max_attempts
        )

    async def map(
        self, inputs: Iterable[Any], *, max_attempts: int | None = None
    ) -> AsyncIterator[Any]:
        """Submits one job per input (in batches); yields their results in order."""
        jobs: list[AsyncJob] = []
        for batch in _core.batches(self._job_bodies(inputs, max_attempts)):
            jobs.extend(await self._client._submit_bodies(batch))
        for job in jobs:
            yield await job.result()


class AsyncJob(_core.JobBase):
    """A durable job for asyncio code: ``await job`` or ``await job.result(timeout)``."""

    _client: AsyncClient

    def done(self) -> bool:
        return self.status in _core.FINAL

    async def refresh(self) -> dict[str, Any]:
        self.state = await self._client._json(_core.job_request(self.id))
        return self.state

    async def result(self, timeout: float | None = None) -> Any:
        """The job's result; :class:`asyncio.TimeoutError` if it has not ended within
        ``timeout`` seconds, the job's error if it failed or was cancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done():
            left = _core.LONG_POLL_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError(f"job {self.id} is still {self.status}")
            self.state = await self._client._json(_core.job_request(self.id, wait_s=max(1, left)))
            if deadline is not None and deadline - time.monotonic() < 1 and not self.done():
                await self.refresh()
                if not self.done():
                    raise asyncio.TimeoutError(f"job {self.id} is still {self.status}")
        ok, value = _core.job_outcome(self.state)
        if ok:
            return value
        assert isinstance(value, SwitchboardError)
        raise value

    async def cancel(self) -> bool:
        """Cancels the job; False if it had already ended otherwise."""
        self.state = await self._client._json(_core.Request("POST", f"/v1/jobs/{self.id}/cancel"))
        if not self.done():
            self.state = await self._client._json(
                _core.job_request(self.id, wait_s=_core.CANCEL_WAIT_S)
            )
        return self.status == "cancelled"

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()
