"""Python handlers calling catalog functions through ``ctx.call``: one call tree,
declared callees only, and no deadlock at a capacity of 2."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from conftest import Server, eventually, start_server, stop

from switchboard import errors


@pytest.fixture(scope="module")
def nested() -> Iterator[Server]:
    s = start_server("--max-call-depth", "4")
    s.start_worker("nested:worker", "nest")
    yield s
    stop(s)


def test_a_handler_calls_a_function_and_the_calls_form_one_tree(nested: Server) -> None:
    with nested.client() as c:
        assert c.invoke("admin/py-sum", {"xs": [1, 2, 3]}) == 6
        assert c.invoke("admin/py-async-sum", {"xs": [4, 5]}) == 9

    def nested_records() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = httpx.get(
            f"{nested.url}/v1/invocations",
            params={"function": "admin/py-add", "limit": 5},
            headers={"authorization": f"Bearer {nested.token}"},
        ).json()["invocations"]
        return found if len(found) == 5 else []

    tree = eventually("the nested calls' records", nested_records)
    roots = {r["tree"]["root"] for r in tree}
    assert len(roots) == 2, tree
    for r in tree:
        assert r["tree"]["depth"] == 1
        assert r["tree"]["acting_for"] == "admin@localhost"
        assert r["tree"]["via"] in ("admin/py-sum", "admin/py-async-sum")


def test_undeclared_callees_are_forbidden(nested: Server) -> None:
    with nested.client() as c:
        message = c.invoke("admin/py-sneaky", {})
        assert "--calls admin/py-countdown" in message
        lonely = c.invoke("admin/py-lonely", {})
        assert "declares no functions it calls" in lonely


def test_nested_calls_do_not_deadlock_a_worker_of_capacity_two(nested: Server) -> None:
    def one(_: int) -> int:
        with nested.client() as c:
            return int(c.invoke("admin/py-countdown", {"n": 3}))

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, range(6))) == [0] * 6


def test_recursion_past_the_depth_limit_raises_its_own_error(nested: Server) -> None:
    with nested.client() as c, pytest.raises(errors.CallDepthExceeded) as e:
        c.invoke("admin/py-countdown", {"n": 50})
    assert "over its limit of 4" in str(e.value)
