"""The delivery worker paces its sends to the SES account's send rate.

ses-local enforces a maximum send rate of 5 recipients per second, as a
token bucket like SES's. The worker reads that rate from GetAccount and
sends no faster, so every message is delivered exactly once and the
endpoint throttles only the few sends that meet its bucket's edge.
"""

import collections
import json
import os
import struct
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

import corpus
import ferrystack
import summary

MAX_SEND_RATE = 5
MESSAGES = 40
REGION = "us-east-1"
HEALTH_INTERVAL_S = 5         # deliver.health_interval_ms default


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


def read_varint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def decode_health(data):
    """Decode a ferry.Health record (proto/health.proto) by hand, since
    the tests have no protobuf runtime for Python: {field number: value}."""
    fields = {}
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = read_varint(data, pos)
        elif wire_type == 1:
            value = struct.unpack("<d", data[pos:pos + 8])[0]
            pos += 8
        elif wire_type == 2:
            length, pos = read_varint(data, pos)
            value = data[pos:pos + length].decode()
            pos += length
        else:
            raise ValueError("wire type %d in a Health record" % wire_type)
        fields[number] = value
    return fields


HEALTH_FIELDS = {1: "region", 2: "worker_id", 3: "interval_start_ms",
                 4: "interval_ms", 5: "delivered", 6: "throttled",
                 7: "transient", 8: "region_down", 9: "local_fault",
                 10: "rejected", 11: "clock_offset_ms", 12: "stop_class",
                 13: "send_rate", 14: "max_send_rate",
                 15: "clock_measured_offset_ms", 16: "clock_measured"}


def health_records(stack, region):
    """Return every ferry.health record keyed `region`, decoded."""
    consumer = Consumer({"bootstrap.servers":
                         "127.0.0.1:%d" % stack.kafka_port,
                         "group.id": "ferry-e2e-health",
                         "enable.auto.commit": False})
    records = []
    try:
        metadata = consumer.list_topics("ferry.health", timeout=10)
        for p in metadata.topics["ferry.health"].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition("ferry.health", p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition("ferry.health", p, low)])
            seen = low
            while seen < high:
                record = consumer.poll(10)
                assert record is not None, "timed out reading ferry.health"
                if record.error():
                    continue
                seen = record.offset() + 1
                if record.key().decode() != region:
                    continue
                fields = decode_health(record.value())
                records.append({name: fields.get(number, 0 if number != 12
                                                 else "")
                                for number, name in HEALTH_FIELDS.items()})
    finally:
        consumer.close()
    return records


def test_health_counts_match_ledger(paced_stack):
    """Runs after the pacing test: the worker's ferry.health records add up
    to what ses-local accepted and throttled."""
    stack = paced_stack
    time.sleep(HEALTH_INTERVAL_S * 1.5)     # one more record after the run
    records = health_records(stack, REGION)
    assert records, "no ferry.health record keyed %s" % REGION
    assert {r["region"] for r in records} == {REGION}
    assert len({r["worker_id"] for r in records}) == 1

    ledger = summary.read_ledger(stack.ses_dir(REGION))
    stats = ses_control(stack, REGION, "stats")
    assert sum(r["delivered"] for r in records) == len(ledger)
    assert sum(r["throttled"] for r in records) == \
        stats["by_outcome"].get("TooManyRequestsException", 0)
    for name in ("transient", "region_down", "local_fault", "rejected"):
        assert sum(r[name] for r in records) == 0, name
    for r in records:
        assert r["stop_class"] == ""
        assert r["clock_offset_ms"] == 0
    # ses-local runs on this host: its Date headers agree with our clock
    # within the second they are rounded to.
    measured = [r for r in records if r["clock_measured"]]
    assert measured, "no record measured the clock offset"
    for r in measured:
        offset = r["clock_measured_offset_ms"]
        offset = offset - (1 << 64) if offset >= 1 << 63 else offset
        assert -1500 <= offset <= 1500, offset
        assert 0 < r["interval_ms"] <= HEALTH_INTERVAL_S * 1000 + 1000
    assert records[-1]["max_send_rate"] == MAX_SEND_RATE
    assert 1 <= records[-1]["send_rate"] <= MAX_SEND_RATE

    # Intervals follow each other without gaps or overlaps (to 50 ms).
    for before, after in zip(records, records[1:]):
        end = before["interval_start_ms"] + before["interval_ms"]
        assert abs(after["interval_start_ms"] - end) <= 50
