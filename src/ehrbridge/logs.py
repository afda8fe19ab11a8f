"""How the long-running commands (``ehrbridge run``, ``ehrbridge serve``) log."""

from __future__ import annotations

import logging

#: Libraries whose INFO lines carry request URLs, and so search parameters (names, birth dates,
#: phone numbers): kept at WARNING so no PHI reaches the logs.
QUIET_LOGGERS = ("httpx", "httpcore", "uvicorn.access")


def configure_logging() -> None:
    """INFO for ehrbridge's own loggers, without the URL-logging libraries' request lines."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ehrbridge").setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
