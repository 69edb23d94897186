"""Check what a run delivered, from the ledgers of the ses-local endpoints.

The ledgers are the truth: one JSON line per SendEmail call that an
endpoint accepted, with the envelope id Ferry tagged it with, and the raw
bytes kept in messages/<MessageId>.eml beside the ledger.
"""

import collections
import hashlib
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FERRYCTL = os.path.join(ROOT, os.environ.get("BUILD", "build"), "ferryctl")


def read_ledger(state_dir):
    """Return the ledger entries of one ses-local state directory."""
    path = os.path.join(state_dir, "ledger.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def split_trace_header(raw):
    """Split raw mail into its first header field (with folded lines) and
    the rest."""
    end = 0
    while True:
        nl = raw.find(b"\r\n", end)
        if nl == -1:
            return raw, b""
        end = nl + 2
        if raw[end:end + 1] not in (b" ", b"\t"):
            return raw[:end], raw[end:]


def group_lag(bootstrap, groups):
    """Return the total lag in messages of the Ferry groups, from
    `ferryctl lag`: computed from the broker's watermarks and committed
    offsets, and counting a partition never committed from its start."""
    argv = [FERRYCTL, "lag", "--json", "--bootstrap", bootstrap]
    for group in groups:
        argv += ["--group", group]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError("ferryctl lag failed: %s" % result.stderr.strip())
    return sum(g["lag"] for g in json.loads(result.stdout)["groups"])


def wait_drained(bootstrap, groups, timeout, progress=None):
    """Wait until every group committed up to the end of its topic.

    Returns the total lag left (0 when drained).
    """
    deadline = time.monotonic() + timeout
    while True:
        lag = group_lag(bootstrap, groups)
        if progress is not None:
            progress(lag)
        if lag == 0 or time.monotonic() >= deadline:
            return lag
        time.sleep(1)


class Summary:
    """The outcome of a run, computed from what was sent and the ledgers."""

    def __init__(self, messages, ledger_dirs, organizations,
                 secondary_region="us-west-2"):
        self.messages = messages
        self.sent = len(messages)
        accepted = [m for m in messages if m.code == 250]
        self.accepted = len(accepted)
        self.rejected = collections.Counter(
            "%s %s" % (m.code, m.reply) for m in messages
            if m.code is not None and m.code != 250)
        self.failed = sum(1 for m in messages if m.code is None)
        self.invalid = collections.Counter(
            p for m in messages for p in m.problems)
        self.invalid_messages = sum(1 for m in messages if m.problems)
        self.invalid_accepted = sum(1 for m in accepted if m.problems)
        self.foreign_senders = sum(1 for m in messages if m.org is None)

        entries = collections.defaultdict(list)
        self.per_region = collections.Counter()
        for region, state_dir in ledger_dirs.items():
            for entry in read_ledger(state_dir):
                entry["state_dir"] = state_dir
                entries[entry["envelope_id"]].append(entry)
                self.per_region[region] += 1

        # Multi-region mail may also leave through the secondary region
        # during a failover; pinned mail only ever through its home.
        allowed = {}
        for o in organizations:
            regions = {o["home_region"]}
            if o["multi_region"] and o["integration"] == "smtp":
                regions.add(secondary_region)
            allowed[o["domain"]] = regions
        self.lost = []
        self.duplicated = []
        self.wrong_region = []
        self.identical = 0
        self.different = []
        for m in accepted:
            got = entries.get(m.envelope_id, [])
            if not got:
                self.lost.append(m)
                continue
            if len(got) > 1:
                self.duplicated.append(m)
            domain = m.sender.rsplit("@", 1)[1]
            if any(e["region"] not in allowed[domain] for e in got):
                self.wrong_region.append(m)
            if self.is_identical(m, got[0]):
                self.identical += 1
            else:
                self.different.append(m)
        known = {m.envelope_id for m in accepted}
        self.unexpected = sum(len(v) for k, v in entries.items()
                              if k not in known)
        self.delivered = sum(self.per_region.values())

    @staticmethod
    def is_identical(message, entry):
        """True when SES got the sent bytes plus one Received header that
        names the envelope id."""
        path = os.path.join(entry["state_dir"], "messages",
                            entry["message_id"] + ".eml")
        with open(path, "rb") as f:
            raw = f.read()
        if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
            return False
        trace, rest = split_trace_header(raw)
        return (trace.startswith(b"Received: ")
                and message.envelope_id.encode() in trace
                and hashlib.sha256(rest).hexdigest() == message.sha256)

    def rows(self):
        rows = [("sent", self.sent),
                ("accepted (250)", self.accepted)]
        for reply, count in self.rejected.most_common():
            rows.append(("rejected: " + reply[:66], count))
        if self.failed:
            rows.append(("no reply (connection failed)", self.failed))
        for region, count in sorted(self.per_region.items()):
            rows.append(("delivered in " + region, count))
        rows += [("lost (accepted, never delivered)", len(self.lost)),
                 ("duplicated (delivered twice or more)",
                  len(self.duplicated)),
                 ("delivered in a region its organization does not allow",
                  len(self.wrong_region)),
                 ("byte-identical apart from the trace header",
                  self.identical),
                 ("delivered but not byte-identical", len(self.different)),
                 ("delivered but never accepted", self.unexpected)]
        return rows

    def invalid_rows(self):
        rows = [("not valid mail (each is sent as it is)",
                 self.invalid_messages)]
        for problem, count in self.invalid.most_common():
            rows.append(("  with a " + problem, count))
        rows.append(("  accepted anyway", self.invalid_accepted))
        rows.append(("sent from a domain no organization owns, on purpose",
                     self.foreign_senders))
        return rows

    def format(self):
        out = []
        for title, rows in (("What was sent", self.invalid_rows()),
                            ("What happened", self.rows())):
            width = max(len(label) for label, _ in rows)
            out.append("  %-*s  %8s" % (width, title, "messages"))
            out.append("  %s  %s" % ("-" * width, "-" * 8))
            for label, value in rows:
                out.append("  %-*s  %8d" % (width, label, value))
            out.append("")
        out.append("A message can have more than one problem; the reply names "
                   "the first one the ingress found.")
        return "\n".join(out)
