"""The delivery worker paces its sends to the SES account's send rate.

ses-local enforces a maximum send rate of 5 recipients per second, as a
token bucket like SES's. The worker reads that rate from GetAccount and
sends no faster, so every message is delivered exactly once and the
endpoint throttles only the few sends that meet its bucket's edge.
"""

import collections
import json
import os
import time
import urllib.request

import pytest

import corpus
import ferrystack
import summary

MAX_SEND_RATE = 5
MESSAGES = 40
REGION = "us-east-1"


def ses_control(stack, region, path, document=None):
    """Call ses-local's control API and return the JSON response."""
    url = "http://127.0.0.1:%d/_ferry/%s" % (stack.ses_ports[region], path)
    data = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(
        url, data=data, method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


class PacedStack(ferrystack.Stack):
    """A stack whose SES endpoint in REGION enforces MAX_SEND_RATE before
    the workers start, so their first GetAccount already reads it."""

    def start_deliver(self, region):
        if region == REGION:
            ses_control(self, region, "quota",
                        {"max_send_rate": MAX_SEND_RATE})
        super().start_deliver(region)


@pytest.fixture(scope="module")
def paced_stack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("paced"))
    base_port = int(os.environ.get("FERRY_TEST_PORT", "29092"))
    with PacedStack(state_dir, base_port=base_port,
                    log=lambda text: None) as running:
        yield running
        assert running.crashed() == []


def messages(count):
    """Small messages of acme (mail.us-east-1); every other one has two
    recipients, so the rate counts recipients, not messages."""
    org = ferrystack.ORGANIZATIONS[0]
    result = []
    for i in range(count):
        data = ("Subject: paced %d\r\nMessage-ID: <paced-%d@acme.example>"
                "\r\n\r\nbody %d\r\n" % (i, i, i)).encode()
        m = corpus.Message("paced-%d" % i, data)
        m.org = org
        m.sender = "paced%d@%s" % (i, org["domain"])
        m.recipients = ["paced%d@example.org" % i]
        if i % 2 == 1:
            m.recipients.append("paced%d-cc@example.org" % i)
        result.append(m)
    return result


def test_pacing_delivers_once(paced_stack):
    stack = paced_stack
    sent = messages(MESSAGES)
    started = time.monotonic()
    corpus.send_all(sent, stack.smtp_port, sessions=4)
    accepted = [m for m in sent if m.code == 250]
    assert len(accepted) == MESSAGES, [(m.name, m.code, m.reply)
                                       for m in sent if m.code != 250]

    lag = summary.wait_drained("127.0.0.1:%d" % stack.kafka_port,
                               ["ferry-deliver." + REGION],
                               timeout=120)
    elapsed = time.monotonic() - started
    assert lag == 0

    ledger = summary.read_ledger(stack.ses_dir(REGION))
    delivered = collections.Counter(e["envelope_id"] for e in ledger)
    missing = [m.name for m in accepted if delivered[m.envelope_id] == 0]
    assert missing == []
    repeated = {k: n for k, n in delivered.items() if n > 1}
    assert repeated == {}

    # 60 recipients at 5 per second, after a first second's burst of 5.
    recipients = sum(len(m.recipients) for m in accepted)
    assert elapsed >= (recipients - MAX_SEND_RATE) / MAX_SEND_RATE * 0.9, \
        "delivered %d recipients in %.1f s, faster than the quota" % (
            recipients, elapsed)

    stats = ses_control(stack, REGION, "stats")
    throttled = stats["by_outcome"].get("TooManyRequestsException", 0)
    assert throttled <= 5, "ses-local throttled %d sends: %s" % (
        throttled, stats["by_outcome"])
