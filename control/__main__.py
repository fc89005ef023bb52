"""`python -m control`: the control plane on :8000."""

from __future__ import annotations

import sys

from common.config import load_or_exit
from common.httpserver import server_options
from common.logs import configure
from common.processes import serve
from control.app import create_app
from control.wsserver import PreparedWebSocketProtocol


def main() -> int:
    settings = load_or_exit()
    configure(json=settings.log_json)
    return serve(
        "control",
        create_app,
        settings,
        settings.control_port,
        ws=PreparedWebSocketProtocol,  # the hub's fan-out writes prepared frames (control/wsserver.py)
        **server_options(settings),
    )


if __name__ == "__main__":
    sys.exit(main())
