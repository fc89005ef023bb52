"""What every `biplane` command shares: the output consoles, the global options, running a client call with
its errors as messages and exit codes, and --json output."""

from __future__ import annotations

import asyncio
import json
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from client.api import RemoteError

#: Exit codes of a followed job's final status (usage errors and refused requests exit with 2).
EXIT = {"completed": 0, "failed": 1, "canceled": 3}

out = Console()
err = Console(stderr=True)


class Ctx:
    """The global options (`biplane --url ... --api-key ... --json <command>`)."""

    url: str = "http://127.0.0.1:8000"
    api_key: str = ""
    json: bool = False


ctx = Ctx()


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def emit(data: Any, human: Any = None) -> None:
    if ctx.json or human is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        out.print(human)


def run(coro: Any) -> Any:
    """Run one client call; API errors become messages and exit codes (4xx: 2, else 1)."""
    if not ctx.api_key:
        coro.close()  # never started: no "never awaited" warning after the message
        fail("no API key: pass --api-key or set BIPLANE_API_KEY (`make run` prints one)")
    try:
        return asyncio.run(coro)
    except RemoteError as e:
        where = f" (at {e.pointer})" if e.pointer else ""
        fail(f"{e.message}{where} [{e.code}]", 2 if 400 <= e.status < 500 else 1)
    except OSError as e:
        fail(f"cannot reach {ctx.url}: {e}", 1)
