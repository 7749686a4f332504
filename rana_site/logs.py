"""LOG_FORMAT=json: one JSON object a line, key-shaped strings redacted.

Every record gives `ts` (UTC, ISO 8601), `level`, `logger` and `message`; a record logged with
`extra={"rana": {...}}` (the `rana.completion` line, providers/services/observe.py) adds those
fields at the top level; an exception adds `exc`. The whole line goes through
providers.redaction.redact, so a key that reached any field is masked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from providers.redaction import redact


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "rana", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))
