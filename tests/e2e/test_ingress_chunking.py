"""Large messages through the whole stack, with the broker's default limits.

A message larger than one Kafka record allows (about 1 MB by default) is
written as ordered chunks of ingress.chunk_size bytes under one key, and
the delivery worker joins them again. SES must get the message once, byte
for byte as sent apart from the Received header. A message over the
advertised SIZE gets 552 5.3.4 and leaves no record.
"""

import base64
import hashlib
import os
import smtplib
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

import corpus
import ferrystack
import summary

# The largest raw message SES v2 accepts: 40 MiB after base64.
SES_RAW_MAX = 41943040 // 4 * 3
LARGE_SIZE = 25 * 1000 * 1000
TOO_LARGE_SIZE = 32 * 1000 * 1000
DEFAULT_CHUNK_SIZE = 512 * 1024
TOPIC = "mail.us-east-1"


def make_message(size, tag):
    """Return a MIME message of exactly `size` bytes with CRLF lines of at
    most 78 octets, so it passes the ingress's line checks."""
    head = ("From: alice@acme.example\r\nTo: bob@example.org\r\n"
            "Subject: large %s\r\nMessage-ID: <%s@acme.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" % (tag, tag)).encode()
    body_len = size - len(head)
    # Random bytes, so no layer can shrink the message by compressing it.
    text = base64.b64encode(os.urandom(body_len)).replace(b"=", b"A")
    lines = []
    remaining = body_len
    offset = 0
    while remaining > 0:
        n = min(78, remaining)
        if n > 2:
            lines.append(text[offset:offset + n - 2] + b"\r\n")
        else:
            lines[-1] = lines[-1][:-2] + b"x" * n + b"\r\n"
        offset += n
        remaining -= n
    message = head + b"".join(lines)
    assert len(message) == size
    return message


def send(port, message, size_parameter=False):
    """Send one message; return the (code, text) of the last reply and the
    SIZE the server advertised."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=120)
    try:
        client.ehlo("client.ferry.test")
        advertised = int(client.esmtp_features.get("size", "0"))
        options = ["SIZE=%d" % len(message)] if size_parameter else []
        code, text = client.mail("alice@acme.example", options)
        if code != 250:
            return code, text.decode(), advertised
        code, text = client.rcpt("bob@example.org")
        assert code == 250, text
        code, text = client.data(message)
        return code, text.decode(), advertised
    finally:
        client.close()


def topic_records(stack):
    """Return {key: [partition of each record]} in TOPIC."""
    consumer = Consumer({"bootstrap.servers":
                         "127.0.0.1:%d" % stack.kafka_port,
                         "group.id": "ferry-e2e-chunk-reader",
                         "enable.auto.commit": False})
    counts = {}
    try:
        metadata = consumer.list_topics(TOPIC, timeout=10)
        for p in metadata.topics[TOPIC].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(TOPIC, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(TOPIC, p, low)])
            seen = low
            while seen < high:
                record = consumer.poll(10)
                assert record is not None, "timed out reading " + TOPIC
                if record.error():
                    continue
                key = record.key().decode()
                counts.setdefault(key, []).append(record.partition())
                seen = record.offset() + 1
    finally:
        consumer.close()
    return counts


def end_offsets(stack):
    consumer = Consumer({"bootstrap.servers":
                         "127.0.0.1:%d" % stack.kafka_port,
                         "group.id": "ferry-e2e-chunk-reader"})
    try:
        metadata = consumer.list_topics(TOPIC, timeout=10)
        return {p: consumer.get_watermark_offsets(
                    TopicPartition(TOPIC, p), timeout=10)[1]
                for p in metadata.topics[TOPIC].partitions}
    finally:
        consumer.close()


def wait_for_ledger(stack, envelope_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in summary.read_ledger(stack.ses_dir("us-east-1"))
                 if e["envelope_id"] == envelope_id]
        if found:
            # A duplicate would come right after; give it the time to.
            time.sleep(3)
            return [e for e in summary.read_ledger(
                stack.ses_dir("us-east-1"))
                if e["envelope_id"] == envelope_id]
        time.sleep(0.5)
    return []


def peak_rss_kb(stack):
    pid = stack.processes["ingress"][0].pid
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


@pytest.fixture(scope="module")
def large_run(stack):
    """Send one 25 MB message; the tests below check its journey."""
    message = make_message(LARGE_SIZE, "chunked")
    rss_before = peak_rss_kb(stack)
    code, text, advertised = send(stack.smtp_port, message)
    return {"message": message, "code": code, "text": text,
            "advertised": advertised, "rss_before": rss_before,
            "rss_after": peak_rss_kb(stack),
            "envelope_id": corpus.queued_id(text)}


def test_large_advertised_size_fits_ses(large_run):
    assert large_run["advertised"] > LARGE_SIZE
    assert large_run["advertised"] <= SES_RAW_MAX - 1024


def test_large_message_accepted(large_run):
    assert large_run["code"] == 250, large_run["text"]
    assert large_run["envelope_id"] is not None


def test_large_message_written_as_chunks(stack, large_run):
    partitions = topic_records(stack).get(large_run["envelope_id"], [])
    assert len(partitions) == -(-LARGE_SIZE // DEFAULT_CHUNK_SIZE)


def test_large_message_chunks_share_partition(stack, large_run):
    """The chunks must stay in one partition to keep their order."""
    partitions = topic_records(stack).get(large_run["envelope_id"], [])
    assert len(set(partitions)) == 1, sorted(set(partitions))


def test_large_message_delivered_once(stack, large_run):
    found = wait_for_ledger(stack, large_run["envelope_id"])
    assert len(found) == 1
    path = os.path.join(stack.ses_dir("us-east-1"), "messages",
                        found[0]["message_id"] + ".eml")
    with open(path, "rb") as f:
        raw = f.read()
    trace, rest = summary.split_trace_header(raw)
    assert trace.startswith(b"Received: ")
    assert large_run["envelope_id"].encode() in trace
    assert len(rest) == LARGE_SIZE
    assert (hashlib.sha256(rest).hexdigest()
            == hashlib.sha256(large_run["message"]).hexdigest())


def test_large_message_held_about_once(large_run):
    """The ingress's peak memory grows by about the message size, not by a
    multiple of it."""
    growth_kb = large_run["rss_after"] - large_run["rss_before"]
    assert growth_kb * 1024 < 1.5 * LARGE_SIZE, growth_kb


@pytest.mark.parametrize("size_parameter", [False, True],
                         ids=["at end of data", "at MAIL with SIZE"])
def test_over_size_rejected_without_record(stack, large_run, size_parameter):
    before = end_offsets(stack)
    message = make_message(TOO_LARGE_SIZE, "too-large")
    code, text, advertised = send(stack.smtp_port, message, size_parameter)
    assert code == 552, text
    assert text.startswith("5.3.4"), text
    assert TOO_LARGE_SIZE > advertised
    time.sleep(1)
    assert end_offsets(stack) == before


def test_small_message_still_one_record(stack, large_run):
    code, text, _ = send(stack.smtp_port,
                         b"Subject: small\r\n\r\nsmall body\r\n")
    assert code == 250, text
    records = topic_records(stack)
    assert len(records.get(corpus.queued_id(text), [])) == 1


def test_messages_spread_over_partitions(stack, large_run):
    """Messages sent apart in time land in more than one partition, so no
    partition, and no worker that owns it, takes all the mail."""
    ids = []
    for i in range(30):
        code, text, _ = send(stack.smtp_port,
                             b"Subject: spread %d\r\n\r\nbody\r\n" % i)
        assert code == 250, text
        ids.append(corpus.queued_id(text))
        time.sleep(0.03)
    records = topic_records(stack)
    used = {records[i][0] for i in ids}
    assert len(used) > 1, used


def test_no_daemon_crashed(stack, large_run):
    assert stack.crashed() == []
    assert ferrystack.topic_for(ferrystack.ORGANIZATIONS[0]) == TOPIC
