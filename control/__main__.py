"""`python -m control`: the control plane on :8000."""

from __future__ import annotations

import uvicorn

from common.httpserver import server_options
from common.logs import configure
from common.settings import Settings
from control.app import create_app
from control.wsserver import PreparedWebSocketProtocol


def main() -> None:
    settings = Settings()
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
