"""`python -m frontend`: the web UI on :8080 (BIPLANE_URL and BIPLANE_API_KEY point it at control)."""

from __future__ import annotations

from common.logs import configure
from common.settings import Settings
from frontend.app import run


def main() -> None:
    settings = Settings()
    configure(json=settings.log_json)
    run(settings)


if __name__ in {"__main__", "__mp_main__"}:
    main()
