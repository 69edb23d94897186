"""Log lines of the form `time level ses-local region=R event key=value ...` on stderr."""

import json
import logging
import math
import re
import sys
import time

logger = logging.getLogger("ses-local")

# A log value with whitespace, a quote or "=" is written as a JSON string.
NEEDS_QUOTING = re.compile(r'[\s"=]')

# (whole second, "YYYY-MM-DDTHH:MM:SS.") of the last format_rfc3339 call.
_rfc3339_second = (None, "")


def format_rfc3339(timestamp: float) -> str:
    """Format a Unix time as UTC "YYYY-MM-DDTHH:MM:SS.mmmZ".

    The result is that of datetime.fromtimestamp(timestamp, utc) formatted
    with strftime, which rounds to microseconds (half to even) and then
    drops the microseconds below the millisecond.
    """
    global _rfc3339_second
    fraction, whole = math.modf(timestamp)
    second = int(whole)
    microsecond = round(fraction * 1_000_000)
    if microsecond >= 1_000_000:
        second += 1
        microsecond -= 1_000_000
    millisecond = microsecond // 1000
    cached_second, prefix = _rfc3339_second
    if cached_second != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _rfc3339_second = (second, prefix)
    return f"{prefix}{millisecond:03d}Z"


class EventFormatter(logging.Formatter):
    def __init__(self, region: str, worker: int | None = None):
        super().__init__()
        # With --processes above 1, "worker=I" after the region names the child process.
        self.prefix = f"ses-local region={region}" + ("" if worker is None else f" worker={worker}")

    def format(self, record: logging.LogRecord) -> str:
        timestamp = format_rfc3339(record.created)
        line = f"{timestamp} {record.levelname} {self.prefix} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(region: str, level: int = logging.INFO, worker: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter(region, worker))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def format_log_fields(fields: dict) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = str(value)
        if not text or NEEDS_QUOTING.search(text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log_event(level: int, event: str, **fields) -> None:
    if not logger.isEnabledFor(level):
        return
    formatted = format_log_fields(fields)
    if formatted:
        logger.log(level, "%s %s", event, formatted)
    else:
        logger.log(level, "%s", event)
