"""Logging set-up for the command line: text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

from oauth_tai.audit import AUDIT_LOGGER, FIELDS_ATTRIBUTE
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
        # An audit event's fields become keys of their own, for shippers
        # to index; they never replace the four above.
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            data.update({k: v for k, v in fields.items() if k not in data})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_logging(settings: Settings, *, level: str | None = None) -> None:
    """Send log records to stderr at the configured level and format.

    The audit trail (:mod:`oauth_tai.audit`) stays at INFO whatever the
    level.

    :param level: a level that replaces the configured one; the commands
        other than ``serve`` and ``gateway`` log warnings and the audit
        trail only.
    """
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or settings.log_level).upper())
    logging.getLogger(AUDIT_LOGGER).setLevel(logging.INFO)
    # oauthlib logs refresh tokens and request bodies at DEBUG; ours say
    # what matters with hashes instead.
    logging.getLogger("oauthlib").setLevel(logging.WARNING)
    # werkzeug's access log prints full query strings, which can carry an
    # authorization code.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # urllib3 logs every request line at DEBUG, query string included: the
    # gateway forwards queries that may hold a token or a code.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # SQLAlchemy logs every statement with its parameters at INFO and
    # below: hashed secrets and users' data have no place in the log.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
