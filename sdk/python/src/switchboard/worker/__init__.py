"""Serve Python functions: :class:`Worker`, its handlers' :class:`Context`, and
``python -m switchboard.worker module:worker``."""

from .._worker import Context, Worker, main

__all__ = ["Context", "Worker", "main"]
