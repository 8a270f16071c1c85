"""{{function}}: served from this machine with the Switchboard Python SDK."""

from switchboard import Worker

worker = Worker()


@worker.function("{{function}}")
def {{ident}}(name: str, excited: bool = False) -> dict[str, str]:
    """Greets someone."""
    return {"greeting": f"Hello, {name}" + ("!" if excited else ".")}


if __name__ == "__main__":
    worker.run()
