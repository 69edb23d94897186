"""Delivery status notifications for messages SES rejects for good.

With deliver.dsn_from set, a message that SES in its region rejects
(ses-local's message_rejected fault) goes to mail.R.dead, and an RFC 3464
report goes back to its sender through SES in the same region. A report
that SES rejects in turn gets no report of its own.
"""

import json
import os
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

import corpus
import ferrystack
import summary

REGION = "us-east-1"
DSN_FROM = "mailer-daemon@acme.example"


def ses_control(stack, path, document=None, method=None):
    url = "http://127.0.0.1:%d/_ferry/%s" % (stack.ses_ports[REGION], path)
    data = None if document is None else json.dumps(document).encode()
    request = urllib.request.Request(
        url, data=data, method=method or ("GET" if data is None else "POST"),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


class DsnStack(ferrystack.Stack):
    """A stack whose workers send notifications from DSN_FROM."""

    def write_config(self):
        super().write_config()
        with open(self.config_path) as f:
            text = f.read()
        text = text.replace("deliver:\n",
                            "deliver:\n  dsn_from: %s\n" % DSN_FROM, 1)
        with open(self.config_path, "w") as f:
            f.write(text)


@pytest.fixture(scope="module")
def dsn_stack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("dsn"))
    base_port = int(os.environ.get("FERRY_TEST_PORT", "29092"))
    with DsnStack(state_dir, base_port=base_port,
                  log=lambda text: None) as running:
        yield running
        assert running.crashed() == []


def send(stack, name):
    org = ferrystack.ORGANIZATIONS[0]
    data = ("Subject: %s\r\nMessage-ID: <%s@acme.example>\r\n\r\n"
            "body of %s\r\n" % (name, name, name)).encode()
    m = corpus.Message(name, data)
    m.org = org
    m.sender = "%s@%s" % (name, org["domain"])
    m.recipients = ["%s-rcpt@example.org" % name]
    corpus.send_all([m], stack.smtp_port, sessions=1)
    assert m.code == 250, (m.code, m.reply)
    return m


def dead_keys(stack):
    """Return the record keys in mail.R.dead."""
    topic = "mail.%s.dead" % REGION
    consumer = Consumer({"bootstrap.servers":
                         "127.0.0.1:%d" % stack.kafka_port,
                         "group.id": "ferry-e2e-dead",
                         "enable.auto.commit": False})
    keys = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            seen = low
            while seen < high:
                record = consumer.poll(10)
                assert record is not None, "timed out reading " + topic
                if record.error():
                    continue
                keys.append(record.key().decode())
                seen = record.offset() + 1
    finally:
        consumer.close()
    return keys


def drain(stack):
    assert summary.wait_drained("127.0.0.1:%d" % stack.kafka_port,
                                ["ferry-deliver." + REGION],
                                timeout=90) == 0


def reports_to(stack, sender):
    """Return (ledger entry, raw bytes) of messages accepted for sender."""
    result = []
    for entry in summary.read_ledger(stack.ses_dir(REGION)):
        if entry["destinations"] == [sender]:
            path = os.path.join(stack.ses_dir(REGION), "messages",
                                entry["message_id"] + ".eml")
            with open(path, "rb") as f:
                result.append((entry, f.read()))
    return result


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.5)
    return condition()


def test_rejected_message_gets_dsn(dsn_stack):
    stack = dsn_stack
    ses_control(stack, "faults", {"fault": "message_rejected", "count": 1})
    m = send(stack, "rejected1")
    assert wait_for(lambda: reports_to(stack, m.sender)), \
        "no notification reached the sender"
    drain(stack)

    ledger = summary.read_ledger(stack.ses_dir(REGION))
    assert [e for e in ledger if e["envelope_id"] == m.envelope_id] == []
    assert m.envelope_id in dead_keys(stack)

    reports = reports_to(stack, m.sender)
    assert len(reports) == 1
    entry, raw = reports[0]
    assert DSN_FROM in entry["from"]
    text = raw.decode("ascii")
    assert "report-type=delivery-status" in text
    assert "Final-Recipient: rfc822; rejected1-rcpt@example.org\r\n" in text
    assert "Action: failed\r\nStatus: 5.0.0\r\n" in text
    assert "Message rejected: virus detected" in text
    assert "X-Ferry-Envelope-Id: %s\r\n" % m.envelope_id in text
    assert "Message-ID: <rejected1@acme.example>\r\n" in text
    assert "body of rejected1" not in text


def test_rejected_dsn_gets_no_dsn(dsn_stack):
    stack = dsn_stack
    ses_control(stack, "faults", {"fault": "message_rejected", "count": 2})
    m = send(stack, "rejected2")

    # Both the message and its notification end in mail.R.dead.
    assert wait_for(lambda: len([k for k in dead_keys(stack)]) >= 3)
    drain(stack)
    time.sleep(2)
    assert reports_to(stack, m.sender) == []
    assert m.envelope_id in dead_keys(stack)
    assert ses_control(stack, "faults")["fault"] is None

    # Nothing went to the notification's sender either.
    assert reports_to(stack, DSN_FROM) == []

    # A message after the fault is delivered as usual.
    after = send(stack, "after2")
    assert wait_for(lambda: any(
        e["envelope_id"] == after.envelope_id
        for e in summary.read_ledger(stack.ses_dir(REGION))))
