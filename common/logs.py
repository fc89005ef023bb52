"""structlog setup, chosen once here and called only by entrypoints."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(json: bool = False, level: int = logging.INFO) -> None:
    """Route structlog and stdlib logging to stderr: JSON in containers, console text on a TTY."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # No merge_contextvars: nothing binds structlog context variables, and it walks every context variable
    # (LangGraph sets many) on each line: 7 % of a busy worker's CPU in the profile.
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # Quiet per-request access lines; our own middleware counts requests in metrics.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
