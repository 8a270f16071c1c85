"""The frames of testdata/protocol/frames.json, which the Rust peer checks too
(crates/swb-api/tests/golden.rs): this SDK writes the worker's byte for byte and
reads the server's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from switchboard import errors, protocol

GOLDEN = json.loads(
    (Path(__file__).resolve().parents[3] / "testdata" / "protocol" / "frames.json").read_text()
)
FRAMES = {f["name"]: f for f in GOLDEN["frames"]}


def frame(name: str) -> bytes:
    f = FRAMES[name]
    header: bytes = f["header"].encode()
    payload: bytes = f["payload"].encode()
    return len(header).to_bytes(4, "big") + header + payload


def test_the_worker_writes_its_frames_byte_for_byte() -> None:
    for name in ("hello", "hello declaring calls", "hello granting secrets"):
        hello: dict[str, Any] = json.loads(FRAMES[name]["header"])
        assert protocol.hello(
            hello["name"], hello["labels"], hello["capacity"], hello["functions"]
        ) == frame(name)
    assert protocol.heartbeat(3) == frame("heartbeat")
    assert protocol.done(7, None, "INFO step 1\n", 1234, b'{"energy":1.5}') == frame("done")
    error = json.loads(FRAMES["done-error"]["header"])["error"]
    assert protocol.done(8, error, "Traceback\n", 99, b"") == frame("done-error")
    assert protocol.draining() == frame("draining")


@pytest.mark.parametrize("name", [n for n, f in FRAMES.items() if f["from"] == "server"])
def test_the_worker_reads_the_server_s_frames(name: str) -> None:
    header, payload = protocol.decode(frame(name))
    assert header == json.loads(FRAMES[name]["header"])
    assert payload == FRAMES[name]["payload"].encode()
    assert protocol.encode(header, payload) == frame(name)


def test_bad_frames_are_refused() -> None:
    with pytest.raises(protocol.FrameError, match="shorter"):
        protocol.decode(b"\x00\x00")
    with pytest.raises(protocol.FrameError, match="shorter"):
        protocol.decode(b"\x00\x00\x00\x09{}")
    with pytest.raises(protocol.FrameError, match="exceeds"):
        protocol.decode((2 << 20).to_bytes(4, "big"))
    with pytest.raises(protocol.FrameError, match="type"):
        protocol.decode(b"\x00\x00\x00\x02{}")


def test_every_error_code_has_its_class_and_status() -> None:
    codes = json.loads(
        (Path(__file__).resolve().parents[3] / "testdata" / "error-codes.json").read_text()
    )
    for code, status in codes.items():
        e = errors.error_from({"code": code, "message": "m"})
        assert e.code == code and type(e) is not errors.SwitchboardError, code
        assert e.status == status, code
