"""Logging set-up for the command line: text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

from oauth_tai.settings import Settings


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_logging(settings: Settings) -> None:
    """Send log records to stderr at the configured level and format."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # oauthlib logs refresh tokens and request bodies at DEBUG; ours say
    # what matters with hashes instead.
    logging.getLogger("oauthlib").setLevel(logging.WARNING)
    # werkzeug's access log prints full query strings, which can carry an
    # authorization code.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
