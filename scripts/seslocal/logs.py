"""Log lines of the form `time level ses-local region=R event key=value ...` on stderr."""

import datetime
import json
import logging
import sys

logger = logging.getLogger("ses-local")


class EventFormatter(logging.Formatter):
    def __init__(self, region: str, worker: int | None = None):
        super().__init__()
        # With --processes above 1, "worker=I" after the region names the child process.
        self.prefix = f"ses-local region={region}" + ("" if worker is None else f" worker={worker}")

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        timestamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
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
        if not text or any(character.isspace() or character in "\"=" for character in text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log_event(level: int, event: str, **fields) -> None:
    formatted = format_log_fields(fields)
    if formatted:
        logger.log(level, "%s %s", event, formatted)
    else:
        logger.log(level, "%s", event)
