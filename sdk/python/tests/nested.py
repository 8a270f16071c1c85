"""A worker whose functions call other catalog functions through their context."""

from __future__ import annotations

from switchboard import Context, Worker, errors

worker = Worker(capacity=2)


@worker.function("admin/py-add")
def add(a: int, b: int) -> int:
    return a + b


@worker.function("admin/py-sum", calls=["admin/py-add"])
def total(xs: list[int], ctx: Context) -> int:
    """Adds up through admin/py-add, one nested call per number."""
    acc = 0
    for x in xs:
        acc = ctx.call("admin/py-add", {"a": acc, "b": x})
    return acc


@worker.function("admin/py-async-sum", calls=["admin/py-add"])
async def async_total(xs: list[int], ctx: Context) -> int:
    acc = 0
    for x in xs:
        acc = await ctx.acall("admin/py-add", {"a": acc, "b": x})
    return acc


@worker.function("admin/py-countdown", calls=["admin/py-countdown"])
def countdown(n: int, ctx: Context) -> int:
    """Calls itself n deep."""
    return 0 if n == 0 else int(ctx.call("admin/py-countdown", {"n": n - 1}))


@worker.function("admin/py-sneaky", calls=["admin/py-add"])
def sneaky(ctx: Context) -> str:
    """Tries to call what it did not declare."""
    try:
        ctx.call("admin/py-countdown", {"n": 0})
    except errors.Forbidden as e:
        return str(e)
    return "called"


@worker.function("admin/py-lonely")
def lonely(ctx: Context) -> str:
    """Declares nothing, calls anyway."""
    try:
        ctx.call("admin/py-add", {"a": 1, "b": 2})
    except errors.Forbidden as e:
        return str(e)
    return "called"
