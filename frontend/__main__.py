"""`python -m frontend`: the web UI on :8080 (BIPLANE_URL and BIPLANE_API_KEY point it at control)."""

from __future__ import annotations

from common.config import load_or_exit
from common.logs import configure
from frontend.app import run


def main() -> None:
    settings = load_or_exit()
    configure(json=settings.log_json)
    run(settings)


if __name__ in {"__main__", "__mp_main__"}:
    main()
