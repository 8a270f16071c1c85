"""Python workers as real processes serving a real `swb up`."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server, eventually, start_server, stop, worker_env

from switchboard import Client, errors


@pytest.fixture
def fresh() -> Iterator[Server]:
    s = start_server()
    (s.data_dir / "pids").mkdir()
    yield s
    stop(s)


@pytest.fixture
def fresh_small() -> Iterator[Server]:
    s = start_server("--max-output-mb", "1")
    yield s
    stop(s)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie has exited too.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_the_hello_publishes_schemas_from_type_hints(served: Server, client: Client) -> None:
    detail = httpx.get(
        f"{served.url}/v1/functions/admin/describe",
        headers={"authorization": f"Bearer {served.token}"},
    ).json()
    interface = detail["active"]["interface"]
    schema = interface["input"]
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert "ctx" not in client.catalog.admin.whoami.interface["input"]["properties"]
    assert interface["description"] == "Describes its arguments."
    assert client.catalog.admin.add.interface["output"]["properties"] == {
        "sum": {"title": "Sum", "type": "integer"}
    }
    # Pydantic parses the input into the declared types (a dataclass here).
    out = client.catalog.admin.describe(name="n", origin={"x": 1, "y": 2})
    assert out == {
        "name": "n",
        "mode": "fast",
        "ratio": 0.5,
        "tags": [],
        "origin": {"x": 1.0, "y": 2.0},
    }


def test_a_restarted_worker_publishes_no_new_version(fresh: Server) -> None:
    first = fresh.start_worker("workers:worker", "w1", env=worker_env(fresh, "w1"))
    first.kill()
    first.wait()
    eventually("w1 to leave", lambda: "w1" not in fresh.worker_names())
    fresh.start_worker("workers:worker", "w1", env=worker_env(fresh, "w1"))
    versions = fresh.swb("fn", "versions", "admin/add", "--json", check=True).stdout
    assert len(__import__("json").loads(versions)["versions"]) == 1


def test_two_workers_share_calls_and_logs_reach_the_record(fresh: Server) -> None:
    fresh.start_worker("workers:worker", "a", env=worker_env(fresh, "a"))
    fresh.start_worker("workers:worker", "b", env=worker_env(fresh, "b"))
    with fresh.client() as sb:
        whoami = sb.catalog.admin.whoami
        seen = Counter(whoami()["worker"] for _ in range(20))
        assert seen == {"a": 10, "b": 10}, seen

        def records() -> list[dict[str, object]]:
            answer = httpx.get(
                f"{fresh.url}/v1/invocations",
                params={"function": "admin/whoami", "limit": 1},
                headers={"authorization": f"Bearer {fresh.token}"},
            )
            listed: list[dict[str, object]] = answer.json()["invocations"]
            return listed

        # Records are written a moment after the call.
        tail = eventually("a record", records)[0]["stderr_tail"]
        assert "INFO asked by call" in tail, tail


def test_a_cpu_bound_handler_keeps_its_worker_alive(served: Server, client: Client) -> None:
    # 30 s holding the GIL, well past three heartbeat intervals (15 s): the worker's
    # heartbeats keep flowing, the call is never reported lost.
    out = client.catalog.admin.spin(seconds=30)
    assert out["loops"] > 0
    assert "py1" in served.worker_names()


def test_async_handlers_run_concurrently(client: Client) -> None:
    started = time.monotonic()
    jobs = [client.catalog.admin.asleep.submit(seconds=1) for _ in range(8)]
    assert [j.result(timeout=30) for j in jobs] == [{"slept": 1}] * 8
    assert time.monotonic() - started < 5


def test_cancel_kills_a_process_isolated_handler_within_a_second(
    served: Server, client: Client
) -> None:
    job = client.catalog.admin.isolated.submit(seconds=60, tag="cancel")
    pid_file = served.data_dir / "pids" / "cancel"
    pid = int(
        eventually("the handler to start", lambda: pid_file.exists() and pid_file.read_text())
    )
    assert not pid_gone(pid)
    job.cancel()
    eventually("the handler's process to die", lambda: pid_gone(pid), deadline=1.0)
    # A deadline kills it too, and the call answers timeout.
    with pytest.raises(errors.Timeout):
        client.catalog.admin.isolated.options(timeout=1)(seconds=60, tag="deadline")
    pid = int((served.data_dir / "pids" / "deadline").read_text())
    eventually("the timed-out process to die", lambda: pid_gone(pid), deadline=2.0)
    # An isolated call that ends answers normally.
    out = client.catalog.admin.isolated(seconds=0, tag="quick")
    assert out["pid"] != served.workers[0].pid


def test_a_killed_worker_s_job_runs_again_elsewhere(fresh: Server) -> None:
    victim = fresh.start_worker("workers:worker", "victim", env=worker_env(fresh, "victim"))
    with fresh.client() as sb:
        job = sb.catalog.admin.sleep.submit(seconds=3)
        # Running on the victim (a job claimed is not yet a call handed to a worker).
        eventually("the victim to run the job", lambda: fresh.in_flight("victim") == 1)
        fresh.start_worker("workers:worker", "survivor", env=worker_env(fresh, "survivor"))
        victim.kill()
        assert job.result(timeout=60) == {"slept": 3}
        assert job.attempts == 2
        assert job.state["attempt_errors"][0]["code"] == "worker_lost"


def test_sigterm_drains(fresh: Server) -> None:
    proc = fresh.start_worker("workers:worker", "drainer", env=worker_env(fresh, "drainer"))
    with fresh.client() as sb:
        job = sb.catalog.admin.sleep.submit(seconds=2)
        eventually("the worker to run the job", lambda: fresh.in_flight("drainer") == 1)
        proc.send_signal(signal.SIGTERM)
        assert job.result(timeout=30) == {"slept": 2}
        assert job.attempts == 1
    assert proc.wait(timeout=10) == 0
    assert "draining" in fresh.worker_log("drainer")
    # Teardown ran once, after the last call.
    assert (fresh.data_dir / "pids" / f"teardown-{proc.pid}").read_text() == "done"


def test_a_worker_fails_over_and_reconnects(fresh: Server) -> None:
    # The first URL refuses connections: the worker moves on to the second.
    dead = "http://127.0.0.1:1"
    env = {**worker_env(fresh, "mover"), "SWB_URL": f"{dead},{fresh.url}"}
    fresh.start_worker("workers:worker", "mover", env=env)
    # The server restarts on the same address: the worker comes back by itself.
    port = fresh.url.rsplit(":", 1)[1]
    fresh.proc.send_signal(signal.SIGTERM)
    fresh.proc.wait(timeout=30)
    restarted = start_server("--listen", f"127.0.0.1:{port}", data_dir=fresh.data_dir)
    fresh.proc = restarted.proc
    eventually("the worker to reconnect", lambda: "mover" in fresh.worker_names(), deadline=30)
    with fresh.client() as sb:
        assert sb.catalog.admin.add(a=20, b=22) == {"sum": 42}


def test_output_past_the_limit_is_limit_exceeded(fresh_small: Server) -> None:
    fresh_small.start_worker("workers:worker", "w", env=worker_env(fresh_small, "w"))
    with fresh_small.client() as sb:
        with pytest.raises(errors.LimitExceeded) as e:
            sb.catalog.admin.array(values=[0.5] * 300_000)
        assert e.value.details == {"limit": "stdout", "limit_bytes": 1 << 20}
        # The worker is still there.
        assert sb.catalog.admin.add(a=1, b=2) == {"sum": 3}


def test_a_changed_interface_is_refused_unless_replaced(served: Server) -> None:
    import subprocess
    import sys

    from conftest import TESTS

    out = subprocess.run(
        [sys.executable, "-m", "switchboard.worker", "conflicting:worker", "--name", "other"],
        cwd=TESTS,
        env=served.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "conflict" in out.stderr and "admin/add" in out.stderr, out.stderr


def test_a_bad_token_stops_the_worker_with_an_error(fresh: Server) -> None:
    import subprocess
    import sys

    from conftest import TESTS

    out = subprocess.run(
        [sys.executable, "-m", "switchboard.worker", "workers:worker", "--token", "swb_bad"],
        cwd=TESTS,
        env={**fresh.env(), **worker_env(fresh, "bad")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "HTTP 401" in out.stderr, out.stderr
    # A target that is not a Worker says so, in one line.
    for target, says in (
        ("nothere:worker", "error: cannot import nothere"),
        ("workers:nope", "error: workers:nope is not a switchboard.Worker"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "switchboard.worker", target],
            cwd=TESTS,
            env=fresh.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 1 and out.stderr.startswith(says), out.stderr


def test_a_worker_serves_inside_a_program_and_stops_on_request(served: Server) -> None:
    # As in a notebook: `await worker.serve()` on a loop of the program's, `stop()`
    # from elsewhere.
    import asyncio
    import threading

    from switchboard import Worker

    worker = Worker(served.url, served.token, name="inproc", capacity=2)

    @worker.function("admin/triple")
    def triple(x: int) -> int:
        return 3 * x

    thread = threading.Thread(target=lambda: asyncio.run(worker.serve()))
    thread.start()
    eventually("the worker to connect", lambda: "inproc" in served.worker_names())
    with served.client() as sb:
        assert sb.catalog.admin.triple(x=14) == 42
    worker.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    eventually("the worker to leave", lambda: "inproc" not in served.worker_names())


def test_secrets_arrive_in_the_context_of_granted_functions_only(fresh: Server) -> None:
    import subprocess
    import sys

    from conftest import TESTS

    def set_secret(value: str) -> None:
        answer = httpx.put(
            f"{fresh.url}/v1/namespaces/admin/secrets/API_KEY",
            json={"value": value},
            headers={"authorization": f"Bearer {fresh.token}"},
        )
        assert answer.status_code == 200, answer.text

    # Granting a secret that is not set stops the worker at once, naming it.
    out = subprocess.run(
        [sys.executable, "-m", "switchboard.worker", "secretive:worker"],
        cwd=TESTS,
        env=fresh.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "secret API_KEY is not set" in out.stderr, out.stderr

    set_secret("first-value")
    fresh.start_worker("secretive:worker", "keeper")
    with fresh.client() as sb:
        got = sb.catalog.admin.secretive()
        assert got["reversed"] == "eulav-tsrif" and got["names"] == ["API_KEY"]
        # Printing its secrets shows their names, never their values.
        assert "first-value" not in got["shown"] and "API_KEY" in got["shown"]
        assert sb.catalog.admin["secretive-child"]() == "eulav-tsrif"
        assert sb.catalog.admin.ungranted() == []
        # Rotation reaches the next call without restarting the worker.
        set_secret("second-value")
        assert sb.catalog.admin.secretive()["reversed"] == "eulav-dnoces"
