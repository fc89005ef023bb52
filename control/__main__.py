"""`python -m control`: the control plane on :8000."""

from __future__ import annotations

import uvicorn

from common.logs import configure
from common.settings import Settings
from control.app import create_app


def main() -> None:
    settings = Settings()
    configure(json=settings.log_json)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.control_port, log_config=None)


if __name__ == "__main__":
    main()
