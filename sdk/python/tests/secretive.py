"""A worker whose functions are granted the secret API_KEY."""

from switchboard import Context, Worker

worker = Worker()


@worker.function("admin/secretive", secrets=["API_KEY"])
def secretive(ctx: Context) -> dict[str, object]:
    """Shows what it received without echoing it: the value reversed."""
    return {
        "reversed": ctx.secrets["API_KEY"][::-1],
        "shown": repr(ctx.secrets),
        "names": list(ctx.secrets),
    }


@worker.function("admin/secretive-child", secrets=["API_KEY"], isolation="process")
def secretive_child(ctx: Context) -> str:
    return ctx.secrets["API_KEY"][::-1]


@worker.function("admin/ungranted")
def ungranted(ctx: Context) -> list[str]:
    return list(ctx.secrets)
