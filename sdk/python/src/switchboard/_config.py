"""Where the SDK finds its server and token: exactly as the ``swb`` CLI does.

Arguments first, then ``SWB_URL`` / ``SWB_TOKEN``, then the file ``swb login`` writes
(``$SWB_CONFIG``, else ``$XDG_CONFIG_HOME/swb/config.json``, else
``~/.config/swb/config.json``), then the admin token a local ``swb up`` keeps in
``./.swb/admin.token`` (here or in a folder above); the server defaults to ``http://127.0.0.1:7070``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import Unauthenticated

DEFAULT_SERVER = "http://127.0.0.1:7070"


def _split(urls: str) -> list[str]:
    return [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]


def _saved() -> dict[str, str]:
    path_env = os.environ.get("SWB_CONFIG")
    if path_env:
        path = Path(path_env)
    else:
        base = os.environ.get("XDG_CONFIG_HOME")
        home = os.environ.get("HOME")
        if base:
            path = Path(base) / "swb" / "config.json"
        elif home:
            path = Path(home) / ".config" / "swb" / "config.json"
        else:
            return {}
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise Unauthenticated(f"{path} is not a valid swb config file: {e}") from e
    if not isinstance(data, dict):
        raise Unauthenticated(f"{path} is not a valid swb config file")
    return {k: v for k, v in data.items() if isinstance(v, str)}


def server_urls(url: str | list[str] | None = None) -> list[str]:
    """Every server given, in order (workers fail over between them); never empty."""
    given = [u.rstrip("/") for u in url if u] if isinstance(url, list) else _split(url or "")
    if given:
        return given
    env = _split(os.environ.get("SWB_URL", ""))
    if env:
        return env
    saved = _split(_saved().get("server", ""))
    return saved or [DEFAULT_SERVER]


def token(token: str | None = None) -> str:
    """The API token, or :class:`~switchboard.errors.Unauthenticated` saying how to get one."""
    if token:
        return token
    env = os.environ.get("SWB_TOKEN")
    if env:
        return env
    saved = _saved().get("token")
    if saved:
        return saved
    # A local `swb up`'s admin token: ./.swb here or in a folder above.
    for folder in [Path.cwd(), *Path.cwd().parents]:
        try:
            local = (folder / ".swb" / "admin.token").read_text().strip()
        except OSError:
            continue
        if local:
            return local
    raise Unauthenticated(
        "no API token: pass token=, set SWB_TOKEN, run `swb login`, "
        "or run from the folder where `swb up` keeps ./.swb (or one below it)"
    )
