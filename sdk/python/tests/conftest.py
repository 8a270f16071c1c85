"""Fixtures: a real `swb up` on a free port (the binary cargo built), real worker
processes, and the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard import Client

ROOT = Path(__file__).resolve().parents[3]
TESTS = Path(__file__).resolve().parent


def swb_bin() -> str:
    path = os.environ.get("SWB_BIN") or str(ROOT / "target" / "debug" / "swb")
    if not Path(path).exists():
        pytest.fail(f"no swb binary at {path}: run `cargo build -p swb` or set SWB_BIN")
    return path


def eventually(what: str, check: Callable[[], Any], deadline: float = 20.0) -> Any:
    """Polls ``check`` until it returns something truthy, or fails after ``deadline``."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Server:
    url: str
    token: str
    data_dir: Path
    proc: subprocess.Popen[str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, self.token, **kwargs)

    def env(self) -> dict[str, str]:
        return {**os.environ, "SWB_URL": self.url, "SWB_TOKEN": self.token}

    def swb(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [swb_bin(), *args], env=self.env(), capture_output=True, text=True, timeout=60
        )
        if check and out.returncode != 0:
            pytest.fail(f"swb {' '.join(args)} failed: {out.stderr}")
        return out

    def worker_names(self) -> list[str]:
        r = httpx.get(f"{self.url}/v1/workers", headers={"authorization": f"Bearer {self.token}"})
        return [w["name"] for w in r.json()["workers"]]

    def in_flight(self, name: str) -> int:
        """Calls the server has handed to worker ``name`` and not yet had answered."""
        r = httpx.get(f"{self.url}/v1/workers", headers={"authorization": f"Bearer {self.token}"})
        return sum(w["in_flight"] for w in r.json()["workers"] if w["name"] == name)

    def start_worker(
        self, target: str, name: str, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``python -m switchboard.worker tests/<target>`` as a real process, connected."""
        log = open(self.data_dir / f"{name}.log", "wb")  # noqa: SIM115 - kept by the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "switchboard.worker", target, "--name", name, *extra],
            cwd=TESTS,
            env={**self.env(), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)

        def connected() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"worker {name} exited:\n{self.worker_log(name)}")
            return name in self.worker_names()

        eventually(f"worker {name} to connect", connected)
        return proc

    def worker_log(self, name: str) -> str:
        return (self.data_dir / f"{name}.log").read_text(errors="replace")


def start_server(*extra: str, data_dir: Path | None = None) -> Server:
    """`swb up` on a free port (or `--listen` in `extra`), in a new data directory
    (or `data_dir`, to restart one)."""
    data = data_dir or Path(tempfile.mkdtemp(prefix="swb-py-"))
    listen = [] if "--listen" in extra else ["--listen", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [swb_bin(), "up", "--data-dir", str(data), *listen, *extra],
        stdout=subprocess.PIPE,
        stderr=open(data / "up.log", "ab"),  # noqa: SIM115 - kept by the process
        text=True,
        env={**os.environ, "SWB_LOG": os.environ.get("SWB_LOG", "warn")},
    )
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on " in line:
                found.append(line.split("listening on ", 1)[1].strip())

    threading.Thread(target=read, daemon=True).start()
    url = eventually("swb up to listen", lambda: found and found[0])
    token = (data / "admin.token").read_text().strip()
    return Server(url=url, token=token, data_dir=data, proc=proc)


def stop(server: Server) -> None:
    for w in server.workers:
        if w.poll() is None:
            w.kill()
        w.wait()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
    if not os.environ.get("SWB_TEST_KEEP"):
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # Outputs up to 64 MiB: a 10 MB array comes back as about 25 MB of JSON.
    s = start_server("--max-output-mb", "64")
    yield s
    stop(s)


@pytest.fixture(scope="module")
def served(server: Server) -> Server:
    """The server with `workers.py`'s worker connected (functions admin/…)."""
    (server.data_dir / "pids").mkdir()
    server.start_worker("workers:worker", "py1", env=worker_env(server, "py1"))
    return server


def worker_env(server: Server, name: str) -> dict[str, str]:
    return {"PIDS_DIR": str(server.data_dir / "pids"), "WORKER_NAME": name}


@pytest.fixture
def client(served: Server) -> Iterator[Client]:
    with served.client() as c:
        yield c
