"""Durable record of accepted messages: DIR/ledger.jsonl and DIR/messages/<MessageId>.eml."""

import fcntl
import json
import os
import re
import threading
from collections import Counter
from pathlib import Path


# The envelope_id member of a ledger line as json.dumps writes it, when the
# value needs no escaping (Ferry's envelope ids are ULIDs).
ENVELOPE_ID_FIELD = re.compile(rb'"envelope_id": "([^"\\]*)"')


class Ledger:
    """Append-only ledger of accepted SendEmail calls.

    Each append writes the raw message to messages/<MessageId>.eml (written to
    a temporary name, fsync'd, then renamed) and only then appends one JSON line
    to ledger.jsonl, followed by fsync. So a ledger line always has its .eml
    file, even after a crash.

    Several processes may append to one ledger (ses-local --processes N): each
    line is one os.write on an O_APPEND descriptor under an exclusive flock,
    so lines never interleave, and readers take a shared flock.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.messages_dir = self.state_dir / "messages"
        self.path = self.state_dir / "ledger.jsonl"
        self.messages_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Accepted SendEmail calls per ferry-envelope-id since this ses-local
        # started, counted from the ledger lines after _counted_offset, so the
        # count includes lines of sibling processes that share the ledger.
        self._attempts_by_envelope: Counter[str] = Counter()
        self._counted_offset = self.path.stat().st_size if self.path.exists() else 0

    def append(self, entry: dict, raw_message: bytes) -> dict:
        """Store the message, set entry["attempt"] and append the entry. Returns the entry."""
        self._write_message_file(entry["message_id"], raw_message)
        with self._lock:
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                self._count_lines_appended_by_others(descriptor)
                envelope_id = entry.get("envelope_id")
                if envelope_id is None:
                    entry["attempt"] = 1
                else:
                    self._attempts_by_envelope[envelope_id] += 1
                    entry["attempt"] = self._attempts_by_envelope[envelope_id]
                line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
                written = os.write(descriptor, line)
                if written != len(line):
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
                os.fsync(descriptor)
                self._counted_offset += len(line)
            finally:
                os.close(descriptor)  # closing the only descriptor releases the flock
        return entry

    def read_entries(self) -> list[dict]:
        """Return every ledger line, including lines written by earlier processes."""
        if not self.path.exists():
            return []
        with self._lock, open(self.path, encoding="utf-8") as ledger_file:
            fcntl.flock(ledger_file, fcntl.LOCK_SH)
            return [json.loads(line) for line in ledger_file if line.strip()]

    def _count_lines_appended_by_others(self, descriptor: int) -> None:
        """Count the envelope ids of lines that other processes appended since this one last looked.

        The caller holds the exclusive flock, so every line is complete.
        """
        size = os.fstat(descriptor).st_size
        if size < self._counted_offset:
            self._counted_offset = size  # the file was truncated by hand
        if size == self._counted_offset:
            return
        appended = os.pread(descriptor, size - self._counted_offset, self._counted_offset)
        self._counted_offset = size
        for line in appended.splitlines():
            # Only complete lines count: a line cut short by a writer that
            # crashed is not an accepted call. Lines are written with
            # sort_keys, so the id is found without decoding the whole line.
            if not line.endswith(b"}"):
                continue
            match = ENVELOPE_ID_FIELD.search(line)
            if match is not None:
                envelope_id = match.group(1).decode("utf-8")
            elif b'"envelope_id": "' in line:
                envelope_id = json.loads(line).get("envelope_id")  # escaped
            else:
                continue
            self._attempts_by_envelope[envelope_id] += 1

    def _write_message_file(self, message_id: str, raw_message: bytes) -> None:
        final_path = self.messages_dir / f"{message_id}.eml"
        temporary_path = self.messages_dir / f".{message_id}.eml.tmp"
        with open(temporary_path, "wb") as message_file:
            message_file.write(raw_message)
            message_file.flush()
            os.fsync(message_file.fileno())
        os.replace(temporary_path, final_path)
