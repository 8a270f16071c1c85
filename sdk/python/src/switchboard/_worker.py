"""Serve Python functions from any machine: a worker that dials out to the server and
runs the calls of the remote functions it serves. The code never leaves this machine;
only each function's interface (JSON Schemas made from its type hints) is published.

>>> from switchboard import Worker
>>> worker = Worker()
>>> @worker.function("alice/simulate", idempotent=True, timeout="5m")
... def simulate(time: float, steps: int = 100) -> dict[str, float]:
...     '''Runs the simulation.'''
...     return {"energy": time * steps}
>>> worker.run()          # or: python -m switchboard.worker mymodule:worker

It speaks the worker protocol (docs/protocol.md) like ``swb serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import io
import logging
import multiprocessing
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_type_hints

import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from . import _codec, _config, protocol
from .errors import (
    BadOutput,
    Forbidden,
    FunctionError,
    Internal,
    LimitExceeded,
    SwitchboardError,
    Timeout,
)

__all__ = ["Context", "Worker", "main"]

log = logging.getLogger("switchboard.worker")

F = TypeVar("F", bound=Callable[..., Any])

#: Largest frame this worker accepts (the server bounds inputs far below it).
MAX_FRAME = 1 << 30


class Secrets(Mapping[str, str]):
    """The secrets a function's version is granted (``secrets=`` of
    :meth:`Worker.function`), by name: ``ctx.secrets["API_KEY"]``. Its ``repr``
    shows their names only, so that logging a context reveals no value."""

    def __init__(self, pairs: list[list[str]] | None = None) -> None:
        self._values = {name: value for name, value in pairs or []}

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(
                f"no secret {name!r} was granted: serve the function with "
                f"secrets=[{name!r}] and set it with `swb secret set {name}`"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({sorted(self._values)})"


class Context:
    """What a handler may know about its call: declare a parameter ``ctx: Context``
    (it is left out of the function's schema)."""

    def __init__(
        self,
        call: int,
        invocation: str | None,
        function: str,
        timeout_ms: int,
        profile: Any,
        *,
        server: str | None = None,
        token: str | None = None,
        pool: _Pool | None = None,
        traceparent: str | None = None,
        secrets: Secrets | None = None,
    ) -> None:
        # The call's number in this worker's session (the protocol's).
        self._call = call
        # Nested calls: the server and this call's own token (absent when the
        # function declares no `calls`), and the pool a blocked call lends a thread.
        self._server = server
        self._token = token
        self._pool = pool
        self._client: Any = None
        self._aclient: Any = None
        #: The id of the call's invocation record (what ``swb inv show`` takes).
        self.call_id = invocation or ""
        #: The call's W3C ``traceparent``: its tree's trace, its own span.
        self.traceparent = traceparent or ""
        #: The secrets granted to the function (``secrets=``), by name.
        self.secrets = secrets if secrets is not None else Secrets()
        self.function = function
        self.profile = profile
        #: ``time.monotonic()`` at which the server gives up on the call.
        self.deadline = time.monotonic() + timeout_ms / 1000
        self._cancelled = False
        self._log: io.StringIO | None = None
        self._logger: logging.Logger | None = None

    @property
    def logger(self) -> logging.Logger:
        """A logger whose lines end up in the call's stderr tail (its record)."""
        if self._logger is None:
            self._log = io.StringIO()
            self._logger = logging.Logger(f"switchboard.call.{self.function}")
            handler = logging.StreamHandler(self._log)
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            self._logger.addHandler(handler)
        return self._logger

    def _logged(self) -> str:
        return self._log.getvalue() if self._log is not None else ""

    @property
    def cancelled(self) -> bool:
        """True once the call was cancelled or its deadline passed: stop early."""
        return self._cancelled or time.monotonic() > self.deadline

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return max(0.0, self.deadline - time.monotonic())

    def call(self, name: str, input: Any = None, **options: Any) -> Any:
        """Calls the catalog function ``name`` through the platform, as part of this
        call's tree: it acts for this call's caller, may call only what the function
        declared (``calls=`` of :meth:`Worker.function`), and has no more time than
        this call has left. Its failure raises the error's exception class."""
        from .client import Client

        if self._client is None:
            self._client = Client(self._nested_server(name), self._token)
        if self._pool is None:
            return self._client.invoke(name, input, **options)
        # This thread waits: the pool may start another for the calls it waits on.
        with self._pool.lent():
            return self._client.invoke(name, input, **options)

    async def acall(self, name: str, input: Any = None, **options: Any) -> Any:
        """:meth:`call` for async handlers."""
        from .aio import AsyncClient

        if self._aclient is None:
            self._aclient = AsyncClient(self._nested_server(name), self._token)
        return await self._aclient.invoke(name, input, **options)

    def _nested_server(self, name: str) -> str:
        if self._token is None or self._server is None:
            raise Forbidden(
                f"{self.function} declares no functions it calls: serve it with "
                f"calls=[{name!r}] to call {name}"
            )
        return self._server

    def _close(self) -> None:
        """Releases the connections of nested calls (the call ended)."""
        if self._client is not None:
            self._client.close()

    async def _aclose(self) -> None:
        self._close()
        if self._aclient is not None:
            await self._aclient.aclose()


class _Pool(ThreadPoolExecutor):
    """The threads of sync handlers, ``capacity`` of them, and one more for each call
    waiting in a nested call: the server lends such a call's slot to the calls it
    waits on, which may come back to this worker and must not wait for its thread."""

    def __init__(self, capacity: int) -> None:
        super().__init__(max_workers=capacity, thread_name_prefix="switchboard")
        self._grow = threading.Lock()

    @contextlib.contextmanager
    def lent(self) -> Any:
        with self._grow:
            self._max_workers += 1
        try:
            yield
        finally:
            with self._grow:
                self._max_workers -= 1


def _duration(value: str | float | None) -> int | None:
    """Milliseconds of ``"5m"``, ``"30s"``, ``"250ms"``, ``"1h"`` or seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value * 1000)
    text = value.strip()
    for suffix, scale in (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(suffix)]) * scale)
    raise ValueError(f"a timeout is a number of seconds or like 30s, 5m, 250ms: not {value!r}")


@dataclass
class Served:
    """A function this worker serves: its handler, and what its hello announces."""

    name: str
    handler: Callable[..., Any]
    model: type[pydantic.BaseModel]
    output: pydantic.TypeAdapter[Any] | None
    context: str | None
    description: str | None
    idempotent: bool
    timeout_ms: int | None
    replace: bool
    isolation: Literal["thread", "process"]
    calls: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    keep_io: bool = False
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.handler)

    def announce(self) -> dict[str, Any]:
        interface: dict[str, Any] = {"input": self.model.model_json_schema()}
        if self.output is not None:
            interface["output"] = self.output.json_schema()
        if self.description:
            interface["description"] = self.description
        served: dict[str, Any] = {
            "function": self.name,
            "interface": interface,
            "replace": self.replace,
            "idempotent": self.idempotent,
        }
        if self.timeout_ms is not None:
            served["timeout_ms"] = self.timeout_ms
        if self.calls:
            served["calls"] = self.calls
        if self.secrets:
            served["secrets"] = self.secrets
        if self.keep_io:
            served["keep_io"] = True
        return served

    def arguments(self, data: bytes, ctx: Context) -> dict[str, Any]:
        parsed = self.model.model_validate_json(data or b"{}")
        args = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if self.context:
            args[self.context] = ctx
        return args

    def encode(self, result: Any) -> bytes:
        if self.output is None:
            return _codec.dumps(result)
        try:
            return self.output.dump_json(self.output.validate_python(result))
        except pydantic.ValidationError as e:
            raise BadOutput(
                f"{self.name} returned output its return type refuses: {e}",
                details={"errors": e.errors(include_url=False, include_input=False)},
            ) from e


def _model(name: str, fn: Callable[..., Any]) -> tuple[type[pydantic.BaseModel], str | None]:
    """The input model of ``fn`` from its parameters' type hints, and the name of
    its context parameter (left out of the schema)."""
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    context = None
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"{name}: *args and **kwargs cannot be described by a schema")
        hint = hints.get(p.name, Any)
        if hint is Context or p.name == "ctx":
            context = p.name
            continue
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hint, default)
    model = pydantic.create_model(
        name.replace("/", "_"),
        __config__=pydantic.ConfigDict(extra="forbid"),
        **fields,
    )
    return model, context


def _tail(text: str, limit: int) -> str:
    data = text.encode()
    return data[-limit:].decode(errors="replace") if len(data) > limit else text


class _Answered(Exception):
    """An error a process-isolated call answered, passed through as it is."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


def _failure(error: BaseException, limit: int) -> dict[str, Any]:
    """The error of a call whose handler raised."""
    if isinstance(error, _Answered):
        return error.error
    if isinstance(error, SwitchboardError):
        return {"code": error.code, "message": error.message, "details": error.details}
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "code": FunctionError.code,
        "message": f"{type(error).__name__}: {error}",
        "details": {"exception": type(error).__name__, "stderr_tail": _tail(tb, limit)},
    }


def _done(
    ctx: Context, started: float, limits: dict[str, int], output: bytes, error: BaseException | None
) -> bytes:
    """The ``done`` frame of a call that returned ``output`` or raised ``error``."""
    stderr_limit = int(limits.get("stderr_bytes", 64 << 10))
    stdout_limit = int(limits.get("stdout_bytes", 8 << 20))
    if error is None and len(output) > stdout_limit:
        output, error = (
            b"",
            LimitExceeded(
                f"output exceeds {stdout_limit} bytes",
                details={"limit": "stdout", "limit_bytes": stdout_limit},
            ),
        )
    failure = None if error is None else _failure(error, stderr_limit)
    tail = ctx._logged()
    if failure is not None and failure.get("details", {}).get("stderr_tail"):
        tail += failure["details"]["stderr_tail"]
    duration_us = int((time.monotonic() - started) * 1e6)
    return protocol.done(ctx._call, failure, _tail(tail, stderr_limit), duration_us, output)


def _in_child(served: Served, data: bytes, parent: Context, timeout_ms: int, conn: Any) -> None:
    """A process-isolated call: run it, send back ``(ok, output or error)``."""
    ctx = Context(
        0,
        parent.call_id,
        served.name,
        timeout_ms,
        parent.profile,
        server=parent._server,
        token=parent._token,
        traceparent=parent.traceparent,
        secrets=parent.secrets,
    )
    try:
        result = served.handler(**served.arguments(data, ctx))
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        conn.send((True, served.encode(result)))
    except BaseException as e:
        conn.send((False, _failure(e, 64 << 10)))
    finally:
        ctx._close()
        conn.close()
        os._exit(0)


class Worker:
    """Serves the functions registered with :meth:`function`.

    ``url`` (one or several, comma-separated: it fails over between them) and
    ``token`` are found as for the client. ``capacity`` is how many calls run at once
    (sync handlers in a thread pool of that size, async ones as tasks); ``name``
    defaults to the host plus a short random suffix, as for ``swb serve``.
    """

    def __init__(
        self,
        url: str | list[str] | None = None,
        token: str | None = None,
        *,
        name: str | None = None,
        capacity: int = 16,
        labels: dict[str, str] | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        if not 1 <= capacity <= 10_000:
            raise ValueError("capacity is 1 to 10,000")
        self._urls = url
        self._token = token
        self.name = name or f"{socket.gethostname()}-{random.getrandbits(16):04x}"
        self.capacity = capacity
        self.labels = dict(labels or {})
        self.max_backoff = max_backoff
        self.functions: dict[str, Served] = {}
        self._setup: list[Callable[[], Any]] = []
        self._teardown: list[Callable[[], Any]] = []
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- registration ----------------------------------------------------------------

    def function(
        self,
        name: str,
        *,
        description: str | None = None,
        idempotent: bool = False,
        timeout: str | float | None = None,
        replace: bool = False,
        isolation: Literal["thread", "process"] = "thread",
        calls: list[str] | None = None,
        secrets: list[str] | None = None,
        keep_io: bool = False,
    ) -> Callable[[F], F]:
        """Serves the decorated function as ``name`` (``namespace/name``).

        Its input schema comes from its parameters' type hints, its output schema
        from its return type, its description from ``description`` or its docstring.
        ``idempotent`` lets a call lost with this worker be retried on another;
        ``timeout`` (``"5m"``, ``"30s"``, seconds) is each call's deadline;
        ``replace`` publishes a changed interface as a new version instead of
        refusing it (``SWB_REPLACE=1`` in the environment does so for every function:
        ``swb dev`` sets it); ``isolation="process"`` runs each call in a child process that
        a cancel or the deadline kills; ``calls`` names the functions it may call
        through its context (``ctx.call("alice/add", {...})``), any other is refused;
        ``secrets`` names the namespace's secrets (``swb secret set NAME``) each call
        finds in ``ctx.secrets`` (granting them takes a token that may deploy it);
        ``keep_io`` has the invocation records keep each call's input and output
        (the first 2 KiB of each), for those who may deploy it and each caller's own.
        """
        if "/" not in name:
            raise ValueError(f"a function is named namespace/name, not {name!r}")
        if isolation not in ("thread", "process"):
            raise ValueError("isolation is 'thread' or 'process'")

        def register(fn: F) -> F:
            model, context = _model(name, fn)
            ret = get_type_hints(fn).get("return")
            self.functions[name] = Served(
                name=name,
                handler=fn,
                model=model,
                output=None if ret is None else pydantic.TypeAdapter(ret),
                context=context,
                description=description or inspect.getdoc(fn),
                idempotent=idempotent,
                timeout_ms=_duration(timeout),
                replace=replace or os.environ.get("SWB_REPLACE") == "1",
                isolation=isolation,
                calls=list(calls or []),
                secrets=list(secrets or []),
                keep_io=keep_io,
            )
            return fn

        return register

    def setup(self, fn: F) -> F:
        """Runs ``fn()`` once, before the worker connects (load a model once)."""
        self._setup.append(fn)
        return fn

    def teardown(self, fn: F) -> F:
        """Runs ``fn()`` once, after the worker stopped."""
        self._teardown.append(fn)
        return fn

    # ---- running ---------------------------------------------------------------------

    def run(self) -> None:
        """Serves until SIGTERM or Ctrl-C (which drain: calls under way finish first;
        a second signal stops at once). Inside a running event loop (Jupyter), use
        ``await worker.serve()`` instead."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("an event loop is running here: use `await worker.serve()`")
        if not logging.getLogger().handlers:
            # A program that set up no logging still says what its worker does.
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        asyncio.run(self.serve(signals=True))

    def stop(self) -> None:
        """Asks a serving worker to drain and stop (thread-safe)."""
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def serve(self, *, signals: bool = False) -> None:
        """Serves until :meth:`stop` (or, with ``signals``, SIGTERM/SIGINT)."""
        if not self.functions:
            raise ValueError("no functions to serve: decorate one with @worker.function")
        urls = _config.server_urls(self._urls)
        token = _config.token(self._token)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._signalled)
        for fn in self._setup:
            fn()
        pool = _Pool(self.capacity)
        try:
            await self._sessions(urls, token, pool)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for fn in self._teardown:
                fn()
            if signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)

    def _signalled(self) -> None:
        assert self._stop is not None
        if self._stop.is_set():
            log.warning("second signal: stopping at once")
            os._exit(130)
        log.info("draining: calls under way finish first; a second signal stops at once")
        self._stop.set()

    async def _sessions(self, urls: list[str], token: str, pool: _Pool) -> None:
        """Sessions one after the other, failing over between ``urls`` with backoff."""
        assert self._stop is not None
        step, turn = 0.2, 0
        while not self._stop.is_set():
            url = urls[turn % len(urls)]
            turn += 1
            try:
                welcomed = await Session(self, url, token, pool).run()
            except InvalidStatus as e:
                status = e.response.status_code
                if 400 <= status < 500:
                    raise SwitchboardError(
                        f"the server at {url} refused the worker: HTTP {status} "
                        f"{e.response.body.decode(errors='replace')[:300]}",
                        code="unauthenticated" if status == 401 else "forbidden",
                        status=status,
                    ) from None
                log.warning("cannot connect to %s: HTTP %s", url, status)
                welcomed = False
            except (OSError, ConnectionClosed, asyncio.TimeoutError, protocol.FrameError) as e:
                log.warning("lost the connection to %s: %s", url, e)
                welcomed = False
            if welcomed:
                step = 0.2
            if self._stop.is_set():
                return
            delay = step / 2 + random.random() * step / 2
            step = min(step * 2, self.max_backoff)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)


class Session:
    """One connection: hello, heartbeats, calls, until it drops or the worker stops."""

    def __init__(self, worker: Worker, url: str, token: str, pool: _Pool) -> None:
        self.worker = worker
        #: The server's address, where handlers make nested calls.
        self.server = url.rstrip("/")
        self.url = self.server.replace("http", "ws", 1) + "/v1/worker/connect"
        self.token = token
        self.pool = pool
        #: The calls under way, by id: each one's cancel.
        self.calls: dict[int, Callable[[], None]] = {}
        #: Set while no call is under way (draining waits for it).
        self.idle = asyncio.Event()
        self.idle.set()
        #: Answers of sync handlers, queued by pool threads for the loop to send.
        self.answers: list[tuple[int, bytes]] = []
        self.lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        self.background: set[asyncio.Task[None]] = set()
        self.ws: ClientConnection | None = None

    async def send(self, frame: bytes) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def run(self) -> bool:
        """Runs the session; True if the server welcomed it."""
        w = self.worker
        assert w._stop is not None
        async with connect(
            self.url,
            additional_headers={"authorization": f"Bearer {self.token}"},
            max_size=MAX_FRAME,
            open_timeout=10,
            ping_interval=None,
        ) as ws:
            self.ws = ws
            functions = [s.announce() for s in w.functions.values()]
            await self.send(protocol.hello(w.name, w.labels, w.capacity, functions))
            header, _ = protocol.decode(await asyncio.wait_for(ws.recv(decode=False), 30))
            if header["type"] == "refused":
                error = header.get("error") or {}
                raise SwitchboardError(
                    f"the server refused the worker: {error.get('message', header)}",
                    code=str(error.get("code", "invalid_input")),
                    details=error.get("details"),
                )
            if header["type"] != "welcome":
                raise protocol.FrameError(f"expected welcome, got {header['type']}")
            log.info(
                "worker %s connected to %s, serving %s",
                w.name,
                self.server,
                ", ".join(w.functions),
            )
            beats = asyncio.create_task(self.heartbeats(header["heartbeat_ms"] / 1000))
            stopping = asyncio.create_task(self.drain_when(w._stop))
            try:
                await self.receive()
            finally:
                beats.cancel()
                stopping.cancel()
                for cancel in list(self.calls.values()):
                    cancel()
        return True

    async def heartbeats(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.send(protocol.heartbeat(len(self.calls)))

    async def receive(self) -> None:
        """Handles the server's messages until the session closes."""
        assert self.ws is not None
        async for frame in self.ws:
            if isinstance(frame, str):
                raise protocol.FrameError("a text frame")
            header, payload = protocol.decode(frame)
            kind = header["type"]
            if kind == "call":
                self.start(header, payload)
            elif kind == "cancel":
                cancel = self.calls.get(header["call"])
                if cancel:
                    cancel()
            elif kind == "refused":
                error = header.get("error") or {}
                raise SwitchboardError(
                    f"the server ended the session: {error.get('message')}",
                    code=str(error.get("code", "internal")),
                )
            # Other messages (code pushes) are for Wasm workers; newer ones are ignored.

    async def drain_when(self, stop: asyncio.Event) -> None:
        """Once ``stop`` is set: takes no new calls, lets those under way finish, then
        closes the session (which ends :meth:`receive`)."""
        await stop.wait()
        assert self.ws is not None
        await self.send(protocol.draining())
        await self.idle.wait()
        await self.ws.close()

    def start(self, header: dict[str, Any], payload: bytes) -> None:
        served = self.worker.functions.get(header["function"])
        call = int(header["call"])
        limits = header.get("limits") or {}
        timeout_ms = int(limits.get("timeout_ms", 60_000))
        invocation = header.get("invocation")
        ctx = Context(
            call,
            invocation,
            header["function"],
            timeout_ms,
            header.get("profile"),
            server=self.server,
            token=header.get("token"),
            pool=self.pool,
            traceparent=header.get("traceparent"),
            secrets=Secrets(header.get("secrets")),
        )
        self.idle.clear()
        if served is not None and served.isolation == "thread" and not served.is_async:
            # A sync handler goes straight to the pool and answers through `answered`:
            # no task or future per call on the event loop.
            def cancel() -> None:
                ctx._cancelled = True

            self.calls[call] = cancel
            self.pool.submit(self.run_sync, served, ctx, payload, limits)
            return
        task = asyncio.create_task(self.perform(served, ctx, payload, limits))

        def cancel_task() -> None:
            ctx._cancelled = True
            task.cancel()

        self.calls[call] = cancel_task

    def run_sync(self, served: Served, ctx: Context, data: bytes, limits: dict[str, int]) -> None:
        """Runs a sync handler on a pool thread; its answer goes back to the loop."""
        started = time.monotonic()
        try:
            output = served.encode(served.handler(**served.arguments(data, ctx)))
            frame = _done(ctx, started, limits, output, None)
        except BaseException as e:
            frame = _done(ctx, started, limits, b"", e)
        finally:
            ctx._close()
        with self.lock:
            self.answers.append((ctx._call, frame))
            wake = len(self.answers) == 1
        if wake:
            self.loop.call_soon_threadsafe(self.flush)

    def flush(self) -> None:
        """Sends the answers the pool has queued (one wake-up for as many as queued)."""
        with self.lock:
            answers, self.answers = self.answers, []
        task = asyncio.ensure_future(self.send_all(answers))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def send_all(self, answers: list[tuple[int, bytes]]) -> None:
        for call, frame in answers:
            await self.answer(call, frame)

    async def answer(self, call: int, frame: bytes) -> None:
        """Sends a call's answer, then counts the call ended: draining closes the
        session only once no answer is left to send."""
        if call in self.calls:
            with contextlib.suppress(ConnectionClosed):
                await self.send(frame)
        self.calls.pop(call, None)
        if not self.calls:
            self.idle.set()

    async def perform(
        self, served: Served | None, ctx: Context, data: bytes, limits: dict[str, int]
    ) -> None:
        """Runs an async or process-isolated call (or answers one this worker does not
        serve) on its own task, and answers it."""
        started = time.monotonic()
        output, error = b"", None
        try:
            if served is None:
                raise Internal(f"this worker does not serve {ctx.function}")
            if served.isolation == "process":
                output = await self.in_process(served, ctx, data)
            else:
                output = served.encode(await served.handler(**served.arguments(data, ctx)))
        except asyncio.CancelledError:
            # The server gave up on the call; it ignores any answer now.
            self.calls.pop(ctx._call, None)
            if not self.calls:
                self.idle.set()
            await ctx._aclose()
            return
        except BaseException as e:
            error = e
        await ctx._aclose()
        await self.answer(ctx._call, _done(ctx, started, limits, output, error))

    async def in_process(self, served: Served, ctx: Context, data: bytes) -> bytes:
        """Runs the call in a forked child, killed on cancel or at the deadline."""
        mp = multiprocessing.get_context("fork")
        ours, theirs = mp.Pipe(duplex=False)
        timeout_ms = int(ctx.remaining * 1000)
        child = mp.Process(
            target=_in_child, args=(served, data, ctx, timeout_ms, theirs), daemon=True
        )
        child.start()
        theirs.close()
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(ours.fileno(), ready.set)
        try:
            try:
                await asyncio.wait_for(ready.wait(), ctx.remaining)
            except asyncio.TimeoutError:
                raise Timeout(
                    f"{served.name} ran past its deadline of {timeout_ms} ms",
                    details={"timeout_ms": timeout_ms},
                ) from None
            try:
                ok, value = ours.recv()
            except EOFError:
                raise FunctionError(
                    f"the process running {served.name} died (exit code {child.exitcode})"
                ) from None
        finally:
            loop.remove_reader(ours.fileno())
            ours.close()
            if child.is_alive():
                child.kill()
            await loop.run_in_executor(None, child.join)
        if ok:
            return bytes(value)
        raise _Answered(value)


def _load(target: str) -> Worker:
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SystemExit(f"error: cannot import {module_name} (from {os.getcwd()}): {e}") from None
    worker = getattr(module, attr or "worker", None)
    if not isinstance(worker, Worker):
        raise SystemExit(f"error: {module_name}:{attr or 'worker'} is not a switchboard.Worker")
    return worker


def main(argv: list[str] | None = None) -> None:
    """``python -m switchboard.worker module:worker``: serves that worker."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m switchboard.worker",
        description="Serve the functions of a switchboard.Worker defined in a module.",
    )
    parser.add_argument("target", help="module:attribute of the Worker (attribute: worker)")
    parser.add_argument("--url", help="server URL(s), comma-separated [SWB_URL]")
    parser.add_argument("--token", help="API token [SWB_TOKEN]")
    parser.add_argument("--name", help="worker name [host plus a random suffix]")
    parser.add_argument("--capacity", type=int, help="calls at once")
    args = parser.parse_args(argv)
    worker = _load(args.target)
    if args.url:
        worker._urls = args.url
    if args.token:
        worker._token = args.token
    if args.name:
        worker.name = args.name
    if args.capacity:
        worker.capacity = args.capacity
    try:
        worker.run()
    except SwitchboardError as e:
        raise SystemExit(f"error: {e}") from None
