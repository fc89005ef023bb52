"""`python -m worker`: the data-plane worker on :8001."""

from __future__ import annotations

import sys

from common.httpserver import server_options
from common.logs import configure
from common.processes import serve
from common.settings import Settings
from worker.app import create_app


def main() -> int:
    settings = Settings()
    configure(json=settings.log_json)
    return serve("worker", create_app, settings, settings.worker_port, **server_options(settings))


if __name__ == "__main__":
    sys.exit(main())
