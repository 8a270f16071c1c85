"""The worker the tests serve (run as `python -m switchboard.worker workers:worker`)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from typing_extensions import TypedDict

from switchboard import Context, Worker
from switchboard.errors import InvalidInput

worker = Worker(capacity=8)

state: dict[str, int] = {"setups": 0}


@worker.setup
def load() -> None:
    state["setups"] += 1


@worker.teardown
def unload() -> None:
    if "PIDS_DIR" in os.environ:
        Path(os.environ["PIDS_DIR"], f"teardown-{os.getpid()}").write_text("done")


@dataclass
class Point:
    x: float
    y: float


class Sum(TypedDict):
    sum: int


@worker.function("admin/add", idempotent=True)
def add(a: int, b: int) -> Sum:
    """Adds two integers."""
    return Sum(sum=a + b)


@worker.function("admin/describe", description="Describes its arguments.")
def describe(
    name: str,
    mode: Literal["fast", "slow"] = "fast",
    ratio: float = 0.5,
    tags: list[str] | None = None,
    origin: Point | None = None,
) -> dict[str, object]:
    return {"name": name, "mode": mode, "ratio": ratio, "tags": tags or [], "origin": origin}


@worker.function("admin/fail")
def fail(reason: str) -> dict[str, int]:
    raise ValueError(f"bad reason: {reason}")


@worker.function("admin/refuse")
def refuse(value: int) -> int:
    raise InvalidInput(f"{value} is not acceptable here", details={"pointer": "/value"})


@worker.function("admin/bad-output")
def bad_output(n: int) -> dict[str, int]:
    return {"n": "not a number"}  # type: ignore[dict-item]


@worker.function("admin/whoami")
def whoami(ctx: Context) -> dict[str, object]:
    ctx.logger.info("asked by call %s", ctx.call_id)
    return {
        "call_id": ctx.call_id,
        "worker": os.environ.get("WORKER_NAME", socket.gethostname()),
        "setups": state["setups"],
        "profile": ctx.profile,
    }


@worker.function("admin/sleep", timeout="60s")
def sleep(seconds: float, ctx: Context) -> dict[str, float]:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not ctx.cancelled:
        time.sleep(0.01)
    return {"slept": seconds}


@worker.function("admin/asleep", timeout="60s")
async def asleep(seconds: float) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@worker.function("admin/spin", timeout="120s")
def spin(seconds: float) -> dict[str, int]:
    """Holds the GIL in pure Python for `seconds`."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return {"loops": n}


@worker.function("admin/isolated", isolation="process", timeout="60s")
def isolated(seconds: float, tag: str) -> dict[str, int]:
    """Writes its pid where the test finds it, then sleeps."""
    Path(os.environ["PIDS_DIR"], tag).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"pid": os.getpid()}


@worker.function("admin/array")
def array(values: list[float]) -> dict[str, object]:
    return {"count": len(values), "values": values}
