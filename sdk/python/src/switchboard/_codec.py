"""JSON for inputs and outputs: plain values, dataclasses, pydantic models, dates,
numpy arrays and scalars (without importing numpy)."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import to_json


def _fallback(value: Any) -> Any:
    module = type(value).__module__
    if (module == "numpy" or module.startswith("numpy.")) and hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of ``value``."""
    return to_json(value, fallback=_fallback)


def loads(data: bytes, content_type: str | None = None) -> Any:
    """An output: JSON when it is JSON, else the text, else the bytes."""
    if content_type and "json" not in content_type and not content_type.startswith("text/"):
        return data
    try:
        return json.loads(data)
    except ValueError:
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
