"""A worker serving admin/add with another interface than workers.py's."""

from switchboard import Worker

worker = Worker()


@worker.function("admin/add")
def add(a: str, b: str) -> str:
    return a + b
