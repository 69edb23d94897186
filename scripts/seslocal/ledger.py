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
    so lines never interleave, and readers take a shared flock. The fsync
    comes after the flock is released, and append returns after the fsync.
    """

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.messages_dir = self.state_dir / "messages"
        self.path = self.state_dir / "ledger.jsonl"
        self._path_text = str(self.path)
        self.messages_dir.mkdir(parents=True, exist_ok=True)
        self._messages_dir_text = str(self.messages_dir)
        self._lock = threading.Lock()
        # Accepted SendEmail calls per ferry-envelope-id since this ses-local
        # started, counted from the ledger lines after _counted_offset, so the
        # count includes lines of sibling processes that share the ledger.
        self._attempts_by_envelope: Counter[str] = Counter()
        self._counted_offset = self.path.stat().st_size if self.path.exists() else 0

    def append(self, entry: dict, raw_message: bytes) -> dict:
        """Store the message, set entry["attempt"] and append the entry. Returns the entry."""
        self._write_message_file(entry["message_id"], raw_message)
        encode = AttemptLineEncoder(entry)
        with self._lock:
            descriptor = os.open(self._path_text, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                self._count_lines_appended_by_others(descriptor)
                envelope_id = entry.get("envelope_id")
                if envelope_id is None:
                    entry["attempt"] = 1
                else:
                    self._attempts_by_envelope[envelope_id] += 1
                    entry["attempt"] = self._attempts_by_envelope[envelope_id]
                line = encode(entry["attempt"])
                written = os.write(descriptor, line)
                if written != len(line):
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
                self._counted_offset += len(line)
                # Other processes may append while this one waits for fsync.
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            except BaseException:
                os.close(descriptor)  # closing the only descriptor releases the flock
                raise
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
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
        final_path = f"{self._messages_dir_text}/{message_id}.eml"
        temporary_path = f"{self._messages_dir_text}/.{message_id}.eml.tmp"
        descriptor = os.open(temporary_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(raw_message)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary_path, final_path)


class AttemptLineEncoder:
    """Encoder of an entry's ledger line, json.dumps(entry, sort_keys=True) and a newline.

    The members other than "attempt" are encoded when the encoder is made,
    before the ledger lock is taken. Called with the attempt, the encoder
    puts "attempt" first, where sort_keys puts it when no other key sorts
    before it. Otherwise it encodes the whole entry at that point.
    """

    def __init__(self, entry: dict):
        self._entry = entry
        members = {key: value for key, value in entry.items() if key != "attempt"}
        self._tail = None
        if members and min(members) > "attempt":
            self._tail = json.dumps(members, sort_keys=True)[1:]  # '"key": value, ...}'

    def __call__(self, attempt: int) -> bytes:
        if self._tail is None:
            return (json.dumps(dict(self._entry, attempt=attempt), sort_keys=True) + "\n").encode("utf-8")
        return f'{{"attempt": {attempt:d}, {self._tail}\n'.encode("utf-8")
