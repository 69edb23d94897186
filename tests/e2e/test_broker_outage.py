"""The Kafka broker stops while mail is being sent.

While the broker is down the ingress cannot get an acknowledgement, so it
must reply 451 and never 250. Every message that did get 250, before the
outage or after the broker came back, must be delivered exactly once.

A broker that only stalls may store a message after the ingress gave up
on it and replied 451. The client then sends the message again, so it
is delivered once or twice, but never lost and never produced again by
the ingress on its own.
"""

import collections
import os
import signal
import threading
import time

import pytest

import corpus
import ferrystack
import summary
from rawsmtp import Client

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


def send_raw(stack, sender, data):
    """Send one message in a session of its own and return the reply to
    its data."""
    client = Client(stack)
    try:
        assert client.reply().startswith("220 ")
        assert client.command("EHLO client.ferry.test").startswith("250")
        assert client.command("MAIL FROM:<%s>" % sender).startswith("250")
        assert client.command("RCPT TO:<late@example.org>").startswith("250")
        assert client.command("DATA").startswith("354")
        client.send(data + b".\r\n")
        reply = client.reply()
        client.command("QUIT")
        return reply
    finally:
        client.close()


def test_late_ack_after_451(outage_stack):
    """The broker stalls for 6 s, longer than the ack timeout of 4 s. The
    message waiting for it gets 451, and the broker may still store it
    when it resumes. The client's second attempt gets 250."""
    stack = outage_stack
    sender = "late@" + ferrystack.ORGANIZATIONS[0]["domain"]
    data = (b"Subject: late acknowledgement\r\n"
            b"Message-ID: <late-ack@acme.example>\r\n\r\nbody\r\n")
    assert send_raw(stack, sender, data).startswith("250 ")

    kafka = stack.kafka_pid()
    os.kill(kafka, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        first = send_raw(stack, sender, data)
        time.sleep(max(0.0, 6 - (time.monotonic() - stopped)))
    finally:
        os.kill(kafka, signal.SIGCONT)
    assert first.startswith("451 "), first
    second = send_raw(stack, sender, data)
    assert second.startswith("250 "), second

    assert summary.wait_drained("127.0.0.1:%d" % stack.kafka_port,
                                ["ferry-deliver.us-east-1"],
                                timeout=120) == 0
    ses_dir = stack.ses_dir("us-east-1")
    copies = 0
    for entry in summary.read_ledger(ses_dir):
        path = os.path.join(ses_dir, "messages",
                            entry["message_id"] + ".eml")
        with open(path, "rb") as f:
            copies += b"<late-ack@acme.example>" in f.read()
    # The copies: one sent before the stall, the retry, maybe the late one.
    assert copies in (2, 3), copies
