"""`python -m switchboard stubs`: typed wrappers that `mypy --strict` checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import Server

from switchboard import Client


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_stubs_let_mypy_flag_wrong_arguments(served: Server, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "switchboard", "stubs", "admin", "-o", str(tmp_path)],
        env=served.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    module = tmp_path / "admin.py"
    assert out.stdout.strip() == str(module)
    text = module.read_text()
    assert "class AddOutput(TypedDict):\n    sum: int" in text, text
    assert "def add(client: Client, /, *, a: int, b: int) -> AddOutput:" in text, text
    assert "mode: Literal['fast', 'slow'] | _Unset = _UNSET" in text, text

    good = tmp_path / "good.py"
    good.write_text(
        textwrap.dedent(
            """
            from switchboard import Client
            from admin import add, describe

            def total(sb: Client) -> int:
                describe(sb, name="n", mode="slow")
                return add(sb, a=1, b=2)["sum"]
            """
        )
    )
    checked = mypy(good)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            from switchboard import Client
            from admin import add, describe

            def total(sb: Client) -> str:
                describe(sb, name="n", mode="medium")
                return add(sb, a="one", b=2)["total"]
            """
        )
    )
    checked = mypy(bad)
    assert checked.returncode == 1
    report = checked.stdout
    assert 'Argument "a" to "add" has incompatible type "str"; expected "int"' in report, report
    assert '"mode" to "describe" has incompatible type' in report, report
    assert 'TypedDict "AddOutput" has no key "total"' in report, report

    # And the wrappers call the functions.
    sys.path.insert(0, str(tmp_path))
    try:
        import admin  # type: ignore[import-not-found]

        with served.client() as sb:
            assert admin.add(sb, a=2, b=2) == {"sum": 4}
            assert isinstance(sb, Client)
    finally:
        sys.path.remove(str(tmp_path))
