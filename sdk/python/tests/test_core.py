"""The sans-I/O core: what may be retried, and how a call's arguments split."""

from __future__ import annotations

import httpx
import pytest

from switchboard import _core


def test_only_safe_requests_are_retried() -> None:
    post = _core.Request("POST", "/v1/functions/a/b/invoke")
    get = _core.Request("GET", "/v1/jobs/x", idempotent=True)
    refused = httpx.ConnectError("refused")
    reset = httpx.ReadError("reset")
    # A refused connection never reached the server: any request may go again.
    assert _core.retry_after_error(post, refused) and _core.retry_after_error(get, refused)
    # A request that may have reached it goes again only if that repeats nothing.
    assert not _core.retry_after_error(post, reset)
    assert _core.retry_after_error(get, reset)
    busy = httpx.Response(503)
    assert _core.retry_after_answer(get, busy) and not _core.retry_after_answer(post, busy)
    assert not _core.retry_after_answer(get, httpx.Response(500))
    keyed = _core.submit_request([{"function": "a/b", "idempotency_key": "k"}])
    unkeyed = _core.submit_request(
        [{"function": "a/b"}, {"function": "a/b", "idempotency_key": "k"}]
    )
    assert keyed.idempotent and not unkeyed.idempotent


def test_backoff_is_bounded_and_jittered() -> None:
    delays = list(_core.backoff())
    assert len(delays) == 4
    for i, d in enumerate(delays):
        step = 0.1 * 2**i
        assert step / 2 <= d <= step
    assert len({round(d, 6) for d in _core.backoff()} | {round(d, 6) for d in delays}) > 4


def test_arguments_split_into_input_and_options() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "profile": {"type": "string"}},
        "required": ["a"],
    }
    sig = _core.Signature("ns/f", {"input": schema})
    # "profile" is the function's own property here, so it stays in the input.
    assert sig.split((), {"a": 1, "profile": "p", "version": 2}) == (
        {"a": 1, "profile": "p"},
        {"version": 2},
    )
    loose = _core.Signature("ns/g", None)
    assert loose.split(([1, 2],), {"timeout": 3}) == ([1, 2], {"timeout": 3})
    with pytest.raises(TypeError):
        loose.split((1,), {"x": 1})
