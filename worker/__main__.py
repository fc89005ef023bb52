"""`python -m worker`: the data-plane worker on :8001."""

from __future__ import annotations

import uvicorn

from common.config import load_or_exit
from common.httpserver import server_options
from common.logs import configure
from worker.app import create_app


def main() -> None:
    settings = load_or_exit()
    configure(json=settings.log_json)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.worker_port, log_config=None, **server_options(settings)
    )


if __name__ == "__main__":
    main()
