"""Durable record of accepted messages: DIR/ledger.jsonl and DIR/messages/<MessageId>.eml."""

import fcntl
import json
import os
import threading
from collections import Counter
from pathlib import Path


class Ledger:
    """Append-only ledger of accepted SendEmail calls.

    Each append writes the raw message to messages/<MessageId>.eml (written to
    a temporary name, fsync'd, then renamed) and only then appends one JSON line
    to ledger.jsonl under a thread lock and an flock, followed by fsync. So a
    ledger line always has its .eml file, even after a crash.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.messages_dir = self.state_dir / "messages"
        self.path = self.state_dir / "ledger.jsonl"
        self.messages_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Accepted SendEmail calls per ferry-envelope-id in this process only.
        self._attempts_by_envelope: Counter[str] = Counter()

    def append(self, entry: dict, raw_message: bytes) -> dict:
        """Store the message, set entry["attempt"] and append the entry. Returns the entry."""
        self._write_message_file(entry["message_id"], raw_message)
        with self._lock:
            envelope_id = entry.get("envelope_id")
            if envelope_id is None:
                entry["attempt"] = 1
            else:
                self._attempts_by_envelope[envelope_id] += 1
                entry["attempt"] = self._attempts_by_envelope[envelope_id]
            line = json.dumps(entry, sort_keys=True) + "\n"
            with open(self.path, "a", encoding="utf-8") as ledger_file:
                fcntl.flock(ledger_file, fcntl.LOCK_EX)
                try:
                    ledger_file.write(line)
                    ledger_file.flush()
                    os.fsync(ledger_file.fileno())
                finally:
                    fcntl.flock(ledger_file, fcntl.LOCK_UN)
        return entry

    def read_entries(self) -> list[dict]:
        """Return every ledger line, including lines written by earlier processes."""
        if not self.path.exists():
            return []
        with self._lock, open(self.path, encoding="utf-8") as ledger_file:
            return [json.loads(line) for line in ledger_file if line.strip()]

    def _write_message_file(self, message_id: str, raw_message: bytes) -> None:
        final_path = self.messages_dir / f"{message_id}.eml"
        temporary_path = self.messages_dir / f".{message_id}.eml.tmp"
        with open(temporary_path, "wb") as message_file:
            message_file.write(raw_message)
            message_file.flush()
            os.fsync(message_file.fileno())
        os.replace(temporary_path, final_path)
