"""JSON Schemas both ways: a catalog function's schemas become a Python signature
and docstring; a handler's type hints become the schemas a worker announces."""

from __future__ import annotations

import inspect
import json
import keyword
from typing import Any, TypeGuard

_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def _annotation(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return Any
    kind = schema.get("type")
    if isinstance(kind, str):
        return _TYPES.get(kind, Any)
    return Any


def is_object(schema: Any) -> TypeGuard[dict[str, Any]]:
    """An input schema whose properties become keyword parameters."""
    return (
        isinstance(schema, dict)
        and schema.get("type") == "object"
        and isinstance(schema.get("properties"), dict)
    )


def parameters(schema: Any) -> list[inspect.Parameter]:
    """Keyword-only parameters from an object schema (required ones first, then
    those with a default); a non-object or missing schema takes one ``input``."""
    if not is_object(schema):
        return [inspect.Parameter("input", inspect.Parameter.POSITIONAL_ONLY, annotation=Any)]
    props: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    params = []
    for name, prop in props.items():
        if not name.isidentifier() or keyword.iskeyword(name):
            continue
        default: Any = inspect.Parameter.empty
        if name not in required:
            default = prop.get("default") if isinstance(prop, dict) else None
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=_annotation(prop)
            )
        )
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    return params


def _describe(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any JSON"
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " or ".join(_describe(s) for s in schema[key])
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    parts = []
    kind = schema.get("type")
    if kind == "array" and isinstance(schema.get("items"), dict):
        kind = f"array of {_describe(schema['items'])}"
    if kind:
        parts.append(kind if isinstance(kind, str) else " or ".join(map(str, kind)))
    if "enum" in schema:
        parts.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    for key, word in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("minItems", "items >="),
        ("maxItems", "items <="),
    ):
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    return ", ".join(parts) or "any JSON"


def docstring(name: str, interface: dict[str, Any]) -> str:
    """Description, parameters with their types and bounds, and the output."""
    lines = [interface.get("description") or f"The catalog function {name}.", ""]
    schema = interface.get("input")
    if is_object(schema):
        required = set(schema.get("required", []))
        lines.append("Parameters:")
        for pname, prop in schema["properties"].items():
            flag = "required" if pname in required else "optional"
            if isinstance(prop, dict) and "default" in prop:
                flag += f", default {json.dumps(prop['default'])}"
            text = f"  {pname} ({_describe(prop)}; {flag})"
            if isinstance(prop, dict) and prop.get("description"):
                text += f": {prop['description']}"
            lines.append(text)
    elif schema is not None:
        lines.append(f"Input: {_describe(schema)}")
    else:
        lines.append("Input: any JSON (no input schema)")
    output = interface.get("output")
    if is_object(output):
        fields = ", ".join(f"{k} ({_describe(v)})" for k, v in output["properties"].items())
        lines.append(f"Returns: an object with {fields}")
    elif output is not None:
        lines.append(f"Returns: {_describe(output)}")
    return "\n".join(lines)
