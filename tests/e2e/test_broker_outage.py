"""The Kafka broker stops while mail is being sent.

While the broker is down the ingress cannot get an acknowledgement, so it
must reply 451 and never 250. Every message that did get 250, before the
outage or after the broker came back, must be delivered exactly once.
"""

import collections
import threading
import time

import pytest

import corpus
import ferrystack
import summary

ACK_TIMEOUT_MS = 4000
OUTAGE_S = 15


@pytest.fixture
def outage_stack(tmp_path, base_port):
    with ferrystack.Stack(str(tmp_path), base_port=base_port,
                          ack_timeout_ms=ACK_TIMEOUT_MS,
                          log=lambda text: None) as running:
        yield running


def sender(stack, stop, results):
    """Send one small message per session until `stop` is set."""
    org = ferrystack.ORGANIZATIONS[0]
    i = 0
    while not stop.is_set():
        data = ("Subject: outage %d\r\nMessage-ID: <outage-%d@acme.example>"
                "\r\n\r\nbody %d\r\n" % (i, i, i)).encode()
        m = corpus.Message("outage-%d" % i, data)
        m.org = org
        m.sender = "outage%d@%s" % (i, org["domain"])
        m.recipients = ["outage%d@example.org" % i]
        corpus.send_all([m], stack.smtp_port, sessions=1, timeout=30)
        results.append(m)
        i += 1
        time.sleep(0.05)


def test_broker_outage(outage_stack):
    stack = outage_stack
    stop = threading.Event()
    results = []
    thread = threading.Thread(target=sender, args=(stack, stop, results))
    thread.start()
    try:
        # Stop the broker only once the worker delivers, so the outage also
        # hits deliveries whose offsets are not committed yet.
        deadline = time.monotonic() + 90
        while (len(summary.read_ledger(stack.ses_dir("us-east-1"))) < 5
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert len(summary.read_ledger(stack.ses_dir("us-east-1"))) >= 5, \
            "the worker delivered nothing before the outage"
        stack.stop_kafka(keep_data=True)
        down_since = time.monotonic()
        time.sleep(OUTAGE_S)
        down_until = time.monotonic()
        stack.start_kafka()
        time.sleep(8)
    finally:
        stop.set()
        thread.join()

    # Replies that arrived while the broker was certainly down.
    during = [m for m in results if down_since < m.replied_at < down_until]
    assert during, "no message was answered during the outage"
    codes = collections.Counter(m.code for m in during)
    assert codes[250] == 0, codes
    assert codes[451] > 0, codes

    accepted = [m for m in results if m.code == 250]
    before = [m for m in accepted if m.replied_at < down_since]
    after = [m for m in accepted if m.replied_at > down_until]
    assert before, "nothing was accepted before the outage"
    assert after, "nothing was accepted after the broker came back"

    groups = ["ferry-deliver.us-east-1"]
    assert summary.wait_drained("127.0.0.1:%d" % stack.kafka_port, groups,
                                timeout=120) == 0
    delivered = collections.Counter(
        e["envelope_id"]
        for e in summary.read_ledger(stack.ses_dir("us-east-1")))
    missing = [(m.name, m.envelope_id) for m in accepted
               if delivered[m.envelope_id] == 0]
    assert missing == [], "accepted but never delivered: %s" % missing
    repeated = {envelope_id: count
                for envelope_id, count in delivered.items() if count > 1}
    assert repeated == {}, "delivered more than once: %s" % repeated
