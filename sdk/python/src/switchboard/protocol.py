"""Frames of the worker protocol (docs/protocol.md), version 1.

A frame is one binary WebSocket message: a big-endian u32 header length, a compact
JSON header whose first field is ``"type"``, then the raw payload (call input, call
output). This module only encodes and decodes; :mod:`switchboard.worker` runs the
session.
"""

from __future__ import annotations

import struct
from typing import Any

from pydantic_core import from_json, to_json

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 1 << 20

_LEN = struct.Struct(">I")


class FrameError(ValueError):
    """A frame that does not decode (the peer ends the session on it)."""


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame: ``header`` (with its ``"type"`` written first) and ``payload``."""
    text = to_json({"type": header["type"], **header})
    return b"".join((_LEN.pack(len(text)), text, payload))


def decode(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and payload of one frame."""
    if len(frame) < 4:
        raise FrameError("frame shorter than its header length")
    (n,) = _LEN.unpack_from(frame)
    if n > MAX_HEADER_BYTES:
        raise FrameError(f"frame header of {n} bytes exceeds the limit")
    if len(frame) < 4 + n:
        raise FrameError("frame shorter than its header length")
    try:
        header = from_json(frame[4 : 4 + n])
    except ValueError as e:
        raise FrameError(f"bad frame header: {e}") from e
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise FrameError("bad frame header: not an object with a type")
    return header, frame[4 + n :]


# ---- the messages a worker sends, their fields in the order the Rust peer writes ----


def hello(
    name: str,
    labels: dict[str, str],
    capacity: int,
    functions: list[dict[str, Any]],
) -> bytes:
    return encode(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "name": name,
            "labels": labels,
            "capacity": capacity,
            "runtimes": [],
            "cached": [],
            "functions": functions,
        }
    )


def heartbeat(in_flight: int) -> bytes:
    return encode(
        {
            "type": "heartbeat",
            "in_flight": in_flight,
            "code_cache": {"compiles": 0, "disk_hits": 0, "memory_hits": 0},
        }
    )


def done(
    call: int, error: dict[str, Any] | None, stderr_tail: str, duration_us: int, output: bytes
) -> bytes:
    header: dict[str, Any] = {"type": "done", "call": call}
    if error is not None:
        header["error"] = error
    header["stderr_tail"] = stderr_tail
    header["duration_us"] = duration_us
    return encode(header, output)


def draining() -> bytes:
    return encode({"type": "draining"})
