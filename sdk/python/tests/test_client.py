"""The client against a real `swb up` with a real Python worker process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import json
import os
import pydoc
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import Server, eventually

from switchboard import AsyncClient, Client, Job, errors


def test_catalog_functions_are_callables_with_signatures_and_docs(client: Client) -> None:
    add = client.catalog.admin.add
    assert add(a=1, b=2) == {"sum": 3}
    assert add({"a": 2, "b": 3}) == {"sum": 5}
    assert client.catalog["admin/add"](a=5, b=5) == {"sum": 10}
    assert client.catalog.admin["add"](a=1, b=1) == {"sum": 2}

    sig = inspect.signature(add)
    assert [(p.name, p.kind, p.annotation) for p in sig.parameters.values()] == [
        ("a", inspect.Parameter.KEYWORD_ONLY, int),
        ("b", inspect.Parameter.KEYWORD_ONLY, int),
    ]
    assert add.__doc__ is not None and add.__doc__.startswith("Adds two integers.")
    text = pydoc.plain(pydoc.render_doc(add))
    assert "add(*, a: int, b: int)" in text and "a (integer; required)" in text, text

    describe = client.catalog.admin.describe
    params = inspect.signature(describe).parameters
    assert params["name"].default is inspect.Parameter.empty
    assert params["ratio"].default == 0.5 and params["ratio"].annotation is float
    doc = describe.__doc__ or ""
    assert "Describes its arguments." in doc
    assert 'mode (string, one of "fast", "slow"; optional, default "fast")' in doc, doc
    assert "tags (array of string or null; optional, default null)" in doc, doc
    assert "Returns: object" in doc
    assert "Returns: an object with sum (integer)" in (add.__doc__ or "")
    # Names that are not identifiers are reachable by item access.
    assert client.catalog.admin["bad-output"].name == "admin/bad-output"
    # Tab completion: namespaces, then names.
    assert "admin" in dir(client.catalog)
    assert {"add", "describe", "sleep"} <= set(dir(client.catalog.admin))


def test_arguments_are_checked_before_a_call(client: Client) -> None:
    add = client.catalog.admin.add
    with pytest.raises(TypeError, match=r"missing required argument.*b"):
        add(a=1)
    with pytest.raises(TypeError, match=r"unexpected argument.*c"):
        add(a=1, b=2, c=3)
    with pytest.raises(TypeError, match="keywords, or as one positional"):
        add(1, 2)
    with pytest.raises(
        AttributeError, match=r"admin/ad is not in your catalog \(did you mean admin/add\?\)"
    ):
        client.catalog.admin.ad  # noqa: B018
    with pytest.raises(errors.NotFound):
        client.catalog["admin/nope"]


def test_errors_are_exceptions_of_their_code(client: Client) -> None:
    with pytest.raises(errors.InvalidInput) as e:
        client.catalog.admin.add(a="one", b=2)
    assert e.value.status == 400 and e.value.code == "invalid_input"
    assert e.value.invocation_id

    with pytest.raises(errors.FunctionError) as f:
        client.catalog.admin.fail(reason="testing")
    assert f.value.message == "ValueError: bad reason: testing"
    assert "Traceback" in f.value.stderr_tail and "bad reason: testing" in f.value.stderr_tail
    assert isinstance(f.value, errors.SwitchboardError) and f.value.status == 422

    with pytest.raises(errors.InvalidInput, match="not acceptable") as r:
        client.catalog.admin.refuse(value=3)
    assert r.value.details == {"pointer": "/value"}

    with pytest.raises(errors.BadOutput):
        client.catalog.admin["bad-output"](n=1)

    # A code this SDK does not know maps to the base class, keeping the code.
    unknown = errors.error_from({"code": "brand_new", "message": "m"}, status=418)
    assert type(unknown) is errors.SwitchboardError and unknown.code == "brand_new"

    with pytest.raises(errors.Unauthenticated):
        Client(client.url, "swb_nope").functions()
    with pytest.raises(errors.Unreachable):
        Client("http://127.0.0.1:9", "t").functions()


def test_a_function_shared_with_you_is_in_your_catalog(served: Server) -> None:
    bob = served.swb("user", "add", "bob@example.org").stdout.strip().split()[-1]
    assert bob.startswith("swb_")
    with Client(served.url, bob) as sb:
        assert "admin" not in dir(sb.catalog)
        with pytest.raises(AttributeError):
            sb.catalog.admin.add  # noqa: B018
        served.swb("fn", "share", "admin/add", "bob@example.org")
        assert "admin" in dir(sb.catalog) and dir(sb.catalog.admin) == ["add"]
        assert sb.catalog.admin.add(a=1, b=2) == {"sum": 3}
        with pytest.raises(errors.NotFound):
            sb.catalog["admin/whoami"]


def test_the_sync_client_works_under_a_running_event_loop(client: Client) -> None:
    # As in Jupyter, where a loop is always running: no asyncio.run underneath.
    async def notebook_cell() -> object:
        return client.catalog.admin.add(a=1, b=1)

    assert asyncio.run(notebook_cell()) == {"sum": 2}


def test_dataclasses_and_models_encode_as_json(client: Client) -> None:
    @dataclasses.dataclass
    class Point:
        x: float
        y: float

    out = client.catalog.admin.describe(name="p", origin=Point(1.5, 2.5), tags=("a", "b"))
    assert out["origin"] == {"x": 1.5, "y": 2.5} and out["tags"] == ["a", "b"]


def test_profiles_versions_and_options(served: Server, client: Client) -> None:
    served.swb("profile", "set", "admin/whoami", "fast", '{"threads": 4}')
    whoami = client.catalog.admin.whoami
    assert whoami(profile="fast")["profile"] == {"threads": 4}
    assert whoami.options(profile="fast")()["profile"] == {"threads": 4}
    assert whoami(version=1)["setups"] == 1
    with pytest.raises(errors.NotFound):
        whoami(version=99)
    # Setup ran once in the worker's process, however many calls.
    assert whoami()["setups"] == 1
    # ctx.call_id names the call's invocation record.
    call_id = whoami()["call_id"]
    record = eventually(
        "the record",
        lambda: (
            httpx.get(
                f"{served.url}/v1/invocations/{call_id}",
                headers={"authorization": f"Bearer {served.token}"},
            ).is_success
        ),
    )
    assert record


def test_jobs_are_futures(client: Client) -> None:
    add = client.catalog.admin.add
    job = add.submit(a=2, b=3)
    assert isinstance(job, concurrent.futures.Future)
    assert job.result(timeout=30) == {"sum": 5}
    assert job.done() and job.status == "succeeded" and job.attempts == 1

    listed = {j.id: j for j in client.jobs(function="admin/add", status="succeeded")}
    assert listed[job.id].result(timeout=0) == {"sum": 5}
    # Reattach by id, as another process would.
    again = client.job(job.id)
    assert again.result(timeout=1) == {"sum": 5}

    # A failed job raises its error as its class, with the job's id.
    failing = client.catalog.admin.fail.submit(reason="job", max_attempts=1)
    with pytest.raises(errors.FunctionError) as e:
        failing.result(timeout=30)
    assert e.value.job_id == failing.id and "bad reason: job" in e.value.stderr_tail

    # result() with a timeout raises TimeoutError while the job runs.
    slow = client.catalog.admin.sleep.submit(seconds=30)
    with pytest.raises(concurrent.futures.TimeoutError):
        slow.result(timeout=1)
    assert slow.cancel()
    assert slow.cancelled() and slow.status == "cancelled"
    with pytest.raises(concurrent.futures.CancelledError):
        slow.result()

    # concurrent.futures.wait and as_completed see jobs end by themselves.
    jobs = [add.submit(a=i, b=0) for i in range(3)]
    done, pending = concurrent.futures.wait(jobs, timeout=30)
    assert done == set(jobs) and not pending
    more = [add.submit(a=i, b=1) for i in range(3)]
    finished = list(concurrent.futures.as_completed(more, timeout=30))
    assert sorted(j.result()["sum"] for j in finished) == [1, 2, 3]
    # Done callbacks.
    called: list[Job] = []
    quick = add.submit(a=1, b=1)
    quick.add_done_callback(called.append)
    done, _ = concurrent.futures.wait([quick], timeout=30)
    assert done == {quick}
    eventually("the callback", lambda: called == [quick])

    # Idempotency: the same key returns the same job.
    one = add.submit(a=1, b=2, idempotency_key="py-key")
    two = add.submit(a=1, b=2, idempotency_key="py-key")
    assert one.id == two.id


def test_map_submits_in_batches_and_keeps_order(client: Client) -> None:
    inputs = [{"a": i, "b": 1} for i in range(1200)]
    started = time.monotonic()
    results = list(client.catalog.admin.add.map(inputs))
    assert results == [{"sum": i + 1} for i in range(1200)]
    assert time.monotonic() - started < 120


def test_large_inputs_travel_as_blobs_and_numpy_encodes(served: Server) -> None:
    # A client whose body limit is small sends a larger input through a blob.
    with served.client(max_body_bytes=1000) as small:
        values = [float(i) for i in range(500)]
        out = small.catalog.admin.array(values=values)
        assert out == {"count": 500, "values": values}
        assert small.blobs.list(), "the input went through a blob"
    # A 10 MB numpy array round trip (1.3 million float64s).
    with served.client() as client:
        array = np.random.default_rng(7).random(1_310_720)
        assert array.nbytes >= 10 << 20
        out = client.catalog.admin.array(values=array)
        assert out["count"] == array.size
        assert np.array_equal(np.asarray(out["values"]), array)


def test_blobs(client: Client, tmp_path: Path) -> None:
    info = client.blobs.put(b"hello blobs")
    assert info["size"] == 11 and info["digest"].startswith("sha256:")
    assert client.blobs.get(info["digest"]) == b"hello blobs"
    path = tmp_path / "data.bin"
    path.write_bytes(b"sealed data")
    sealed = client.blobs.put(path, sealed=True)
    assert sealed["sealed"] is True and sealed["name"] == "data.bin"
    assert "name" not in info
    renamed = client.blobs.put(b"hello blobs", name="greeting.txt")
    assert {b["name"] for b in client.blobs.list() if "name" in b} == {"data.bin", "greeting.txt"}
    assert renamed["digest"] == info["digest"]
    with pytest.raises(errors.Sealed):
        client.blobs.get(sealed["digest"])
    client.blobs.delete(info["digest"])
    with pytest.raises(errors.NotFound):
        client.blobs.get(info["digest"])


def test_the_async_client_does_the_same(served: Server) -> None:
    async def main() -> None:
        async with AsyncClient(served.url, served.token) as sb:
            add = await sb.function("admin/add")
            assert inspect.signature(add).parameters["a"].annotation is int
            assert await add(a=1, b=2) == {"sum": 3}
            assert await sb.catalog.admin.add(a=2, b=2) == {"sum": 4}
            job = await add.submit(a=3, b=4)
            assert await job == {"sum": 7}
            assert (await sb.job(job.id)).status == "succeeded"
            results = [r async for r in add.map([{"a": i, "b": i} for i in range(20)])]
            assert results == [{"sum": 2 * i} for i in range(20)]
            with pytest.raises(errors.FunctionError):
                await sb.catalog.admin.fail(reason="async")
            slow = await sb.catalog.admin.sleep.submit(seconds=30)
            with pytest.raises(asyncio.TimeoutError):
                await slow.result(timeout=1)
            assert await slow.cancel()
            info = await sb.blobs.put(b"async bytes")
            assert await sb.blobs.get(info["digest"]) == b"async bytes"
            assert info["digest"] in [b["digest"] for b in await sb.blobs.list()]
            await sb.blobs.delete(info["digest"])
            assert job.id in [j.id for j in await sb.jobs(function="admin/add")]
            # A sync job is awaitable too.
            with served.client() as sync:
                assert await sync.catalog.admin.add.submit(a=1, b=0) == {"sum": 1}

    asyncio.run(main())


def run_python(code: str, server: Server) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_interrupts_result_within_a_second(served: Server) -> None:
    proc = run_python(
        """
        from switchboard import Client
        job = Client().catalog.admin.sleep.submit(seconds=60)
        try:
            print("waiting", flush=True)
            job.result()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            job.cancel()
        """,
        served,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    # Blocked (state S) means inside result()'s long-poll: its next blocking call.
    stat = Path(f"/proc/{proc.pid}/stat")
    eventually("result() to block", lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "S")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 1.0, err
    assert out.strip() == "interrupted", err


def test_importing_has_no_side_effects(tmp_path: Path) -> None:
    code = """
        import logging, threading, sys, os
        before = set(os.listdir("/proc/self/fd"))
        threads = threading.active_count()
        handlers = list(logging.getLogger().handlers)
        import switchboard
        assert threading.active_count() == threads, "a thread"
        assert logging.getLogger().handlers == handlers, "a log handler"
        assert not logging.getLogger("switchboard").handlers, "a log handler"
        after = set(os.listdir("/proc/self/fd"))
        assert after == before, f"opened {after - before}"
        print("clean")
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "clean", out.stderr
    assert list(tmp_path.iterdir()) == [], "a file"


def test_url_and_token_are_found_as_the_cli_finds_them(
    served: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("SWB_URL", "SWB_TOKEN", "SWB_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(errors.Unauthenticated, match="no API token"):
        Client()
    # ./.swb/admin.token, and the default URL.
    (tmp_path / ".swb").mkdir()
    (tmp_path / ".swb" / "admin.token").write_text(served.token + "\n")
    assert Client().url == "http://127.0.0.1:7070"
    # ... also from a folder below it (a project beside the server's folder).
    below = tmp_path / "hello" / "src"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    assert Client().url == "http://127.0.0.1:7070"
    monkeypatch.chdir(tmp_path)
    # swb login's file.
    config = tmp_path / ".config" / "swb" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"server": served.url, "token": served.token}))
    assert Client().catalog.admin.add(a=1, b=1) == {"sum": 2}
    # The environment over the file, arguments over both.
    monkeypatch.setenv("SWB_URL", "http://127.0.0.1:1")
    assert Client().url == "http://127.0.0.1:1"
    assert Client(served.url).url == served.url
    assert os.environ["HOME"] == str(tmp_path)
