"""`python -m worker`: the data-plane worker on :8001."""

from __future__ import annotations

import sys

from common.config import load_or_exit
from common.httpserver import server_options
from common.logs import configure
from common.processes import serve
from worker.app import create_app


def main() -> int:
    settings = load_or_exit()
    configure(json=settings.log_json)
    return serve("worker", create_app, settings, settings.worker_port, **server_options(settings))


if __name__ == "__main__":
    sys.exit(main())
