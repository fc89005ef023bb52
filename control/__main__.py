"""`python -m control`: the control plane on :8000."""

from __future__ import annotations

import uvicorn

from common.config import load_or_exit
from common.httpserver import server_options
from common.logs import configure
from control.app import create_app
from control.wsserver import PreparedWebSocketProtocol


def main() -> None:
    settings = load_or_exit()
    configure(json=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.control_port,
        log_config=None,
        ws=PreparedWebSocketProtocol,  # the hub's fan-out writes prepared frames (control/wsserver.py)
        **server_options(settings),
    )


if __name__ == "__main__":
    main()
