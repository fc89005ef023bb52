"""`python -m control`: the control plane on :8000."""

from __future__ import annotations

from common.logs import configure
from common.settings import Settings
from control.httpserver import serve


def main() -> None:
    settings = Settings()
    configure(json=settings.log_json)
    serve(settings)


if __name__ == "__main__":
    main()
