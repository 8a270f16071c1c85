"""Switchboard for Python: call catalog functions like local ones (:class:`Client`,
:class:`AsyncClient`) and serve Python functions from any machine (:class:`Worker`).

Importing this package opens no socket, writes no file, starts no thread and adds no
log handler.
"""

from . import errors
from ._worker import Context, Worker
from .aio import AsyncClient, AsyncFunction, AsyncJob
from .client import Client, Function, Job
from .errors import SwitchboardError

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncFunction",
    "AsyncJob",
    "Client",
    "Context",
    "Function",
    "Job",
    "SwitchboardError",
    "Worker",
    "errors",
]
