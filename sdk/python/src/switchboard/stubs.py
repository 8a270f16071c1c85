"""Typed wrappers of a namespace's catalog functions, generated from their schemas, so
that a type checker (``mypy --strict``) flags a wrong argument.

    python -m switchboard stubs alice -o typed/

writes ``typed/alice.py``: a ``TypedDict`` per input and output, and one function per
catalog function taking the client first::

    from alice import add
    add(sb, a=1, b=2)["sum"]
"""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path
from typing import Any

from .client import Client

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def _camel(text: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", text)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return name if name and not name[0].isdigit() else f"T{name}"


def _ident(text: str) -> str:
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = f"_{name}"
    return name


class _Writer:
    """Python type expressions for JSON Schemas, and the TypedDicts they need."""

    def __init__(self) -> None:
        self.classes: list[str] = []
        self.names: set[str] = set()
        self.refs: dict[str, str] = {}

    def _class(self, base: str, schema: dict[str, Any], defs: dict[str, Any]) -> str:
        name, n = base, 2
        while name in self.names:
            name, n = f"{base}{n}", n + 1
        self.names.add(name)
        required = set(schema.get("required", []))
        fields = []
        for prop, sub in schema["properties"].items():
            kind = self.type(sub, defs, f"{name}{_camel(prop)}")
            if prop not in required:
                kind = f"NotRequired[{kind}]"
            fields.append((prop, kind))
        if all(p.isidentifier() and not keyword.iskeyword(p) for p, _ in fields):
            body = "\n".join(f"    {p}: {k}" for p, k in fields) or "    pass"
            self.classes.append(f"class {name}(TypedDict):\n{body}\n")
        else:
            items = ", ".join(f"{p!r}: {k}" for p, k in fields)
            self.classes.append(f"{name} = TypedDict({name!r}, {{{items}}})\n")
        return name

    def type(self, schema: Any, defs: dict[str, Any], name: str) -> str:
        if not isinstance(schema, dict):
            return "Any"
        if "$ref" in schema:
            ref = str(schema["$ref"])
            if ref not in self.refs:
                target = defs.get(ref.rsplit("/", 1)[-1])
                self.refs[ref] = "Any"
                self.refs[ref] = self.type(target, defs, _camel(ref.rsplit("/", 1)[-1]))
            return self.refs[ref]
        if "enum" in schema:
            return f"Literal[{', '.join(repr(v) for v in schema['enum'])}]"
        if "const" in schema:
            return f"Literal[{schema['const']!r}]"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.type(s, defs, f"{name}{i}") for i, s in enumerate(schema[key])]
                return " | ".join(dict.fromkeys(options))
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self.type({**schema, "type": k}, defs, name) for k in kind)
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return f"list[{self.type(schema.get('items'), defs, name + 'Item')}]"
        if kind == "object":
            if isinstance(schema.get("properties"), dict) and schema["properties"]:
                return self._class(name, schema, defs)
            return "dict[str, Any]"
        return "Any"


def render(namespace: str, functions: list[tuple[str, dict[str, Any]]]) -> str:
    """The module of typed wrappers for ``functions`` (name, interface) of ``namespace``."""
    w = _Writer()
    defs_out: list[str] = []
    for full, interface in functions:
        short = full.split("/", 1)[1]
        base = _camel(short)
        schema = interface.get("input")
        output = interface.get("output")
        out_type = w.type(output, (output or {}).get("$defs", {}), f"{base}Output")
        params = ["client: Client", "/"]
        if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
            defs = schema.get("$defs", {})
            w.type(schema, defs, f"{base}Input")
            required = set(schema.get("required", []))
            props = sorted(schema["properties"].items(), key=lambda kv: kv[0] not in required)
            keyword_params, lines = [], ["    given: dict[str, Any] = {}\n"]
            for prop, sub in props:
                if not prop.isidentifier() or keyword.iskeyword(prop):
                    continue
                kind = w.type(sub, defs, f"{base}{_camel(prop)}")
                if prop in required:
                    keyword_params.append(f"{prop}: {kind}")
                    lines.append(f"    given[{prop!r}] = {prop}\n")
                else:
                    keyword_params.append(f"{prop}: {kind} | _Unset = _UNSET")
                    lines.append(f"    if not isinstance({prop}, _Unset):\n")
                    lines.append(f"        given[{prop!r}] = {prop}\n")
            params += ["*", *keyword_params] if keyword_params else []
            body = "".join(lines) + (
                f"    return cast({out_type!r}, client.invoke({full!r}, given))\n"
            )
        else:
            params.append(f"input: {w.type(schema, {}, f'{base}Input')}")
            body = f"    return cast({out_type!r}, client.invoke({full!r}, input))\n"
        doc = (interface.get("description") or f"The catalog function {full}.").replace('"""', "'")
        defs_out.append(
            f'def {_ident(short)}({", ".join(params)}) -> {out_type}:\n    """{doc}"""\n{body}'
        )
    header = (
        f'"""Typed wrappers of the catalog functions of {namespace}.\n\n'
        f'Generated by `python -m switchboard stubs {namespace}`; do not edit."""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import Any, Literal, TypedDict, cast\n\n"
        "from typing_extensions import NotRequired\n\n"
        "from switchboard import Client\n\n\n"
        "class _Unset:\n    pass\n\n\n_UNSET = _Unset()\n\n\n"
    )
    return header + "\n\n".join(w.classes + defs_out)


def write(client: Client, namespace: str, out: Path) -> Path:
    """Writes ``out/<namespace>.py`` for every function of ``namespace`` you may see."""
    names = sorted(
        f["function"] for f in client.functions() if f["function"].startswith(namespace + "/")
    )
    functions = [(n, client.function(n).interface) for n in names]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_ident(namespace)}.py"
    path.write_text(render(namespace, functions))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m switchboard")
    sub = parser.add_subparsers(dest="command", required=True)
    stubs = sub.add_parser("stubs", help="write typed wrappers of a namespace's functions")
    stubs.add_argument("namespace")
    stubs.add_argument("-o", "--out", default=".", help="directory [default: .]")
    stubs.add_argument("--url", help="server URL [SWB_URL]")
    stubs.add_argument("--token", help="API token [SWB_TOKEN]")
    args = parser.parse_args(argv)
    with Client(args.url, args.token) as client:
        path = write(client, args.namespace, Path(args.out))
    print(path)
