"""ferryctl against a running Ferry: lag, replay and trace.

Lag must agree with Kafka's own consumer-groups tool, also while the
delivery workers are stopped and a backlog builds up. Replay must count
and re-publish exactly the records of its time window and leave live
traffic and live group offsets alone. Trace must find a message wherever
it is.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import corpus
import ferrystack

FERRYCTL = os.path.join(ferrystack.BUILD, "ferryctl")
KAFKA_LIBS = os.path.join(ferrystack.ROOT, ".cache", "kafka-4.1.1", "libs")
ORG = ferrystack.ORGANIZATIONS[0]          # acme: us-east-1, mail.us-east-1
REGION = ORG["home_region"]
TOPIC = "mail." + REGION
GROUP = "ferry-deliver." + REGION


def ferryctl(stack, *args, timeout=120):
    """Run ferryctl with the stack's configuration; return the result."""
    return subprocess.run([FERRYCTL, args[0], "-c", stack.config_path]
                          + list(args[1:]), capture_output=True, text=True,
                          timeout=timeout)


def bootstrap(stack):
    return "127.0.0.1:%d" % stack.kafka_port


def send(stack, tag, count, org=ORG):
    """Send count small messages through the ingress; return them."""
    messages = corpus.small_messages(tag, count, org)
    corpus.send_all(messages, stack.smtp_port, sessions=2)
    for m in messages:
        assert m.code == 250, "%s: %s %s" % (m.name, m.code, m.reply)
    return messages


def drain(stack, timeout=60):
    """Wait until the delivery groups committed everything.

    This runs ferryctl rather than scripts/summary.py, because the
    librdkafka 2.16.0 bundled with confluent_kafka 2.16.1 crashed (SIGSEGV
    in rd_kafka_cgrp_op under ListConsumerGroupOffsets) when an
    AdminClient listed offsets while the group coordinator was loading.
    """
    groups = []
    for region in ferrystack.PRIMARY_REGIONS:
        groups += ["ferry-deliver." + region,
                   "ferry-deliver.%s.pinned" % region]
    deadline = time.monotonic() + timeout
    while True:
        lag = sum(g["lag"] for g in ferryctl_lag(stack, *groups).values())
        if lag == 0:
            return
        assert time.monotonic() < deadline, \
            "the delivery workers left %d messages" % lag
        time.sleep(1)


def kafka_tool_describe(stack, group):
    """Return {(topic, partition): (current, end, lag)} as printed by
    Kafka's kafka-consumer-groups tool; "-" stays a string."""
    result = subprocess.run(
        ["java", "-cp", os.path.join(KAFKA_LIBS, "*"),
         "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
         "--bootstrap-server", bootstrap(stack), "--describe",
         "--group", group],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {}
    header = None
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields[:2] == ["GROUP", "TOPIC"]:
            header = fields
            continue
        if header is None or len(fields) < 6 or fields[0] != group:
            continue
        row = dict(zip(header, fields))
        value = [row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]]
        value = tuple(int(v) if v != "-" else v for v in value)
        rows[(row["TOPIC"], int(row["PARTITION"]))] = value
    return rows


def ferryctl_lag(stack, *groups):
    args = ["lag", "--json"]
    for g in groups:
        args += ["--group", g]
    result = ferryctl(stack, *args)
    assert result.returncode == 0, result.stderr
    return {g["group"]: g for g in json.loads(result.stdout)["groups"]}


def test_usage_errors_exit_64(stack):
    cases = [
        ["lag", "--bogus"],
        ["lag", "--watch", "soon"],
        ["lag", "--group"],
        ["replay", "--from", "-1h", "--to", "now"],
        ["replay", "--topic", "mail.us-east-1.dead", "--from", "-1h"],
        ["replay", "--topic", "mail.us-east-1.dead", "--from", "now",
         "--to", "-1h"],
        ["replay", "--topic", "mail.us-east-1.dead", "--from", "yesterday",
         "--to", "now"],
        ["replay", "--topic", "mail.us-east-1.dead", "--from", "-1h",
         "--to", "now", "--partitions", "0,x"],
        ["replay", "--topic", "ferry.delivered", "--from", "-1h",
         "--to", "now", "--execute"],
        ["trace"],
        ["trace", "a", "b"],
        ["trace", "--since", "last week", "x@example.org"],
        ["frobnicate"],
    ]
    for args in cases:
        result = subprocess.run([FERRYCTL] + args, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 64, args
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "--help" in result.stderr, result.stderr
    result = subprocess.run([FERRYCTL, "lag"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 64
    assert "--bootstrap" in result.stderr


def test_help_of_every_subcommand(stack):
    for command in ["lag", "replay", "trace"]:
        result = subprocess.run([FERRYCTL, command, "--help"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0
        assert result.stdout.startswith("usage: ferryctl " + command)


def compare_with_kafka_tool(stack, group):
    ours = ferryctl_lag(stack, group)[group]
    theirs = kafka_tool_describe(stack, group)
    assert theirs, "the Kafka tool printed no partition for " + group
    compared = 0
    for row in ours["partitions"]:
        key = (row["topic"], row["partition"])
        if key not in theirs:
            continue
        current, end, lag = theirs[key]
        assert row["end"] == end, key
        if current == "-":
            assert row["committed"] is None, key
        else:
            assert row["committed"] == current, key
            assert row["lag"] == lag, key
        compared += 1
    assert compared == len(theirs)
    return ours


def test_lag_agrees_with_kafka_tool(stack):
    send(stack, "lagwarm", 6)
    drain(stack)
    ours = compare_with_kafka_tool(stack, GROUP)
    assert ours["lag"] == 0
    assert all(r["lag_seconds"] == 0 for r in ours["partitions"])

    # With the worker stopped a backlog builds up, and the lag must show
    # it from the brokers' watermarks.
    stack.stop_process("deliver-" + REGION)
    try:
        sent_at = time.time()
        send(stack, "lagbacklog", 9)
        time.sleep(2)
        ours = compare_with_kafka_tool(stack, GROUP)
        assert ours["lag"] == 9
        for row in ours["partitions"]:
            if row["lag"] > 0:
                assert row["lag_seconds"] >= 1.5
                assert row["lag_seconds"] <= time.time() - sent_at + 1
            else:
                assert row["lag_seconds"] == 0
        table = ferryctl(stack, "lag", "--group", GROUP)
        assert table.returncode == 0, table.stderr
        assert "lag 9" in table.stdout
    finally:
        stack.start_deliver(REGION)
    drain(stack)
    assert ferryctl_lag(stack, GROUP)[GROUP]["lag"] == 0


def test_lag_of_never_committed_group(stack):
    groups = ferryctl_lag(stack)
    takeover = groups["ferry-takeover." + REGION]
    assert takeover["members"] == []
    total = 0
    for row in takeover["partitions"]:
        assert row["committed"] is None
        assert row["lag"] == row["end"] - row["low"]
        total += row["lag"]
    assert total > 0, "mail.%s holds no records yet" % REGION
    assert takeover["lag"] == total

    table = ferryctl(stack, "lag", "--group", "ferry-takeover." + REGION)
    assert table.returncode == 0, table.stderr
    lines = [l.split() for l in table.stdout.splitlines()
             if l.startswith(TOPIC + " ")]
    assert len(lines) == 3
    assert all(fields[2] == "none" for fields in lines)
    assert "lag %d" % total in table.stdout


def test_lag_watch_repeats_until_interrupted(stack):
    process = subprocess.Popen(
        [FERRYCTL, "lag", "--bootstrap", bootstrap(stack), "--group", GROUP,
         "--json", "--watch", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(process.stdout.readline())
        second = json.loads(process.stdout.readline())
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert [g["group"] for g in first["groups"]] == [GROUP]
    assert second["time"] > first["time"]


def test_lag_default_groups(stack):
    groups = ferryctl_lag(stack)
    for region in ferrystack.PRIMARY_REGIONS:
        for name in ["ferry-deliver." + region,
                     "ferry-deliver.%s.pinned" % region,
                     "ferry-takeover." + region]:
            assert name in groups
        assert len(groups["ferry-deliver." + region]["members"]) == 1
    # us-west-2 has no topics of its own in the local stack.
    assert not any("us-west-2" in name for name in groups)

    # Without a configuration the regions come from the mail.R topics.
    result = subprocess.run([FERRYCTL, "lag", "--bootstrap",
                             bootstrap(stack), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    names = {g["group"] for g in json.loads(result.stdout)["groups"]}
    assert names == set(groups)


# F22: replay by time range. Records of our own go to a topic of our own
# with timestamps T0 .. T0 + 60 s; T0 lies 110 s in the past, so the
# window [T0 + 120 s, T0 + 180 s] starts in the future and live records
# produced during a test fall into it.

SOURCE = "ferryctl.test.source"
TARGET = "ferryctl.test.target"
LIVE_GROUP = "ferryctl-test-live"


def records_of(stack, topic):
    """Return every record of topic as (partition, offset, timestamp, key,
    value, headers), read with assign() and no commits."""
    consumer = Consumer({"bootstrap.servers": bootstrap(stack),
                         "group.id": "ferryctl-test-reader",
                         "enable.auto.commit": False})
    out = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            while True:
                record = consumer.poll(10)
                assert record is not None, "timed out reading " + topic
                if record.error():
                    continue
                out.append((p, record.offset(), record.timestamp()[1],
                            record.key(), record.value(),
                            tuple(record.headers() or ())))
                if record.offset() + 1 >= high:
                    break
    finally:
        consumer.close()
    return out


def expected_window(records, start_ms, end_ms):
    """Return {partition: [records]} that a correct replay takes: from the
    first record at or after start_ms, those in the window, up to the
    first record past end_ms."""
    out = {}
    for p in sorted({r[0] for r in records}):
        taken = []
        started = False
        for r in sorted(x for x in records if x[0] == p):
            if not started and r[2] < start_ms:
                continue
            started = True
            if r[2] > end_ms:
                break
            if r[2] >= start_ms:
                taken.append(r)
        out[p] = taken
    return out


def replay(stack, *args, timeout=120):
    result = ferryctl(stack, "replay", "--json", *args, timeout=timeout)
    assert result.returncode == 0, result.stderr
    summary_json = json.loads(result.stdout)
    return {p["partition"]: p for p in summary_json["partitions"]}


def rfc3339(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + \
        ".%03dZ" % (ms % 1000)


def live_offsets(stack):
    return {key: value[0] for key, value in
            kafka_tool_describe(stack, LIVE_GROUP).items()}


@pytest.fixture(scope="module")
def f22(stack):
    """Create the topics, produce the records, commit a live group."""
    admin = AdminClient({"bootstrap.servers": bootstrap(stack)})
    futures = admin.create_topics([NewTopic(SOURCE, num_partitions=3),
                                   NewTopic(TARGET, num_partitions=3)])
    for future in futures.values():
        future.result(timeout=30)

    t0 = int(time.time() * 1000) - 110000
    plan = []
    for i in range(0, 61, 2):
        plan.append((0, t0 + i * 1000))
        if i == 26:
            # Out of order: in window (b) but after a record past its end.
            plan.append((0, t0 + 15000))
    plan += [(1, t0 + i * 1000) for i in range(1, 61, 2)]
    plan += [(2, t0 + s * 1000) for s in (1, 5, 30, 45, 60)]
    producer = Producer({"bootstrap.servers": bootstrap(stack),
                         "enable.idempotence": True})
    for n, (partition, ts) in enumerate(plan):
        producer.produce(SOURCE, key=b"key-%d" % n, value=b"value-%d" % n,
                         partition=partition, timestamp=ts,
                         headers=[("ferry-test", b"h-%d" % n)])
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap(stack),
                         "group.id": LIVE_GROUP,
                         "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(SOURCE, p, 3 + p)
                             for p in range(3)], asynchronous=False)
    consumer.close()
    return {"t0": t0, "records": records_of(stack, SOURCE),
            "live_before": live_offsets(stack)}


def test_replay_window_past_last_record(stack, f22):
    """F22 (a): nothing has a timestamp in the window, so the lookup
    returns END for every partition and nothing is replayed."""
    t0 = f22["t0"]
    parts = replay(stack, "--topic", SOURCE, "--from",
                   rfc3339(t0 + 120000), "--to", rfc3339(t0 + 180000),
                   "--execute", "--to-topic", TARGET)
    assert sorted(parts) == [0, 1, 2]
    for p in parts.values():
        assert p["in_window"] == 0
        assert p["replayed"] == 0
        assert p["start"] == p["end"]
    assert records_of(stack, TARGET) == []

    table = ferryctl(stack, "replay", "--topic", SOURCE, "--from",
                     rfc3339(t0 + 120000), "--to", rfc3339(t0 + 180000))
    assert table.returncode == 0, table.stderr
    assert "would replay 0 records" in table.stdout


def test_replay_window_exact_records(stack, f22):
    """F22 (b): exactly the records in [T0 + 10 s, T0 + 20 s], each
    partition stopping at its first record past the end."""
    t0 = f22["t0"]
    start, end = t0 + 10000, t0 + 20000
    expected = expected_window(f22["records"], start, end)
    assert [len(expected[p]) for p in range(3)] == [6, 5, 0]

    window = ["--topic", SOURCE, "--from", rfc3339(start), "--to",
              rfc3339(end)]
    dry = replay(stack, *window)
    for p in range(3):
        assert dry[p]["in_window"] == len(expected[p]), p
        assert dry[p]["replayed"] == 0, p
    assert records_of(stack, TARGET) == []

    done = replay(stack, *window, "--execute", "--to-topic", TARGET)
    for p in range(3):
        assert done[p]["in_window"] == len(expected[p]), p
        assert done[p]["skipped_delivered"] == 0, p
        assert done[p]["replayed"] == len(expected[p]), p
    copies = records_of(stack, TARGET)
    assert sorted((r[3], r[4], r[5]) for r in copies) == sorted(
        (r[3], r[4], r[5]) for p in expected for r in expected[p])

    # Only the partitions named.
    only = replay(stack, *window, "--partitions", "1")
    assert sorted(only) == [1]
    assert only[1]["in_window"] == len(expected[1])


def test_replay_ignores_live_records(stack, f22):
    """F22 (c): records produced while replay runs, with timestamps in its
    window, are not replayed."""
    t0 = f22["t0"]
    before = len(records_of(stack, TARGET))
    process = subprocess.Popen(
        [FERRYCTL, "replay", "-c", stack.config_path, "--topic", SOURCE,
         "--from", rfc3339(t0 + 120000), "--to", rfc3339(t0 + 180000),
         "--execute", "--to-topic", TARGET],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # replay writes its start and end offsets before it reads.
    starts = 0
    while starts < 3:
        line = process.stderr.readline()
        assert line, "replay ended before it printed its offsets"
        starts += "reading offsets" in line
    producer = Producer({"bootstrap.servers": bootstrap(stack),
                         "enable.idempotence": True})
    now = int(time.time() * 1000)
    assert t0 + 120000 <= now <= t0 + 180000, "the test ran too slowly"
    for i in range(5):
        producer.produce(SOURCE, key=b"live-%d" % i, value=b"live",
                         partition=i % 3, timestamp=now)
    assert producer.flush(30) == 0
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "replayed 0 records" in stdout
    assert len(records_of(stack, TARGET)) == before


def test_replay_leaves_group_offsets(stack, f22):
    """F22 (d): the live group's committed offsets are unchanged, and
    replay left no consumer group of its own behind."""
    assert live_offsets(stack) == f22["live_before"]
    assert sorted(f22["live_before"]) == [(SOURCE, p) for p in range(3)]
    result = subprocess.run(
        ["java", "-cp", os.path.join(KAFKA_LIBS, "*"),
         "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
         "--bootstrap-server", bootstrap(stack), "--list"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    groups = result.stdout.split()
    assert LIVE_GROUP in groups
    assert not [g for g in groups if g.startswith("ferryctl.")]


def ses_control(stack, method, path, body=None):
    request = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (stack.ses_ports[REGION], path),
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def ledger_entries(stack, envelope_id):
    return ses_control(stack, "GET",
                       "/_ferry/ledger?envelope_id=" + envelope_id)


def dead_records(stack, envelope_id):
    return [r for r in records_of(stack, TOPIC + ".dead")
            if r[3] == envelope_id.encode()]


def test_replay_dead_letter_delivered_once(stack):
    ses_control(stack, "POST", "/_ferry/faults",
                {"fault": "message_rejected", "count": 1})
    start_ms = int(time.time() * 1000) - 1000
    (message,) = send(stack, "deadletter", 1)
    drain(stack)
    dead = dead_records(stack, message.envelope_id)
    assert len(dead) == 1
    headers = dict(dead[0][5])
    assert headers["ferry-source-topic"] == TOPIC.encode()
    assert ledger_entries(stack, message.envelope_id) == []
    dead_trace = trace(stack, message.envelope_id)
    assert dead_trace["status"] == "dead-lettered"
    states = {(l["topic"], l["state"]) for l in dead_trace["locations"]}
    assert states == {(TOPIC, "consumed"), (TOPIC + ".dead", "dead-lettered")}
    (dead_location,) = [l for l in dead_trace["locations"]
                        if l["topic"] == TOPIC + ".dead"]
    assert dead_location["error_code"] == "MessageRejected"
    assert dead_location["error_message"]

    # The cause is gone: SES accepts the message now.
    ses_control(stack, "DELETE", "/_ferry/faults")
    window = ["--topic", TOPIC + ".dead", "--from", rfc3339(start_ms),
              "--to", rfc3339(int(time.time() * 1000))]
    parts = replay(stack, *window, "--execute")
    assert sum(p["in_window"] for p in parts.values()) == 1
    assert sum(p["replayed"] for p in parts.values()) == 1
    drain(stack)
    deadline = time.monotonic() + 30
    while not ledger_entries(stack, message.envelope_id):
        assert time.monotonic() < deadline, "the replayed message never " \
            "reached SES"
        time.sleep(0.5)
    assert len(ledger_entries(stack, message.envelope_id)) == 1

    # A second replay finds it in ferry.delivered and skips it.
    again = replay(stack, *window, "--execute")
    assert sum(p["skipped_delivered"] for p in again.values()) == 1
    assert sum(p["replayed"] for p in again.values()) == 0
    drain(stack)
    time.sleep(2)
    assert len(ledger_entries(stack, message.envelope_id)) == 1


def test_replay_after_outage_delivers_each_once(stack):
    """SES rejects 5 of 12 messages for good as they pass, as during an
    outage that returned MessageRejected. Replaying the dead topic's
    window delivers those 5 once each; replaying the mail topic's window
    afterwards sends none of the 12 again."""
    ses_control(stack, "POST", "/_ferry/faults",
                {"fault": "message_rejected", "count": 5})
    start_ms = int(time.time() * 1000) - 1000
    messages = send(stack, "outage", 12)
    drain(stack)
    end_ms = int(time.time() * 1000)
    ids = [m.envelope_id for m in messages]
    dead = [i for i in ids if dead_records(stack, i)]
    assert len(dead) == 5
    assert [i for i in ids if ledger_entries(stack, i)] == \
        [i for i in ids if i not in dead]

    ses_control(stack, "DELETE", "/_ferry/faults")
    window = ["--from", rfc3339(start_ms), "--to", rfc3339(end_ms)]
    parts = replay(stack, "--topic", TOPIC + ".dead", *window, "--execute")
    assert sum(p["replayed"] for p in parts.values()) == 5
    drain(stack)
    deadline = time.monotonic() + 30
    while not all(ledger_entries(stack, i) for i in dead):
        assert time.monotonic() < deadline, "a replayed message never " \
            "reached SES"
        time.sleep(0.5)

    parts = replay(stack, "--topic", TOPIC, *window, "--execute")
    assert sum(p["replayed"] for p in parts.values()) == 0
    assert sum(p["skipped_delivered"] for p in parts.values()) == 12
    drain(stack)
    time.sleep(2)
    for envelope_id in ids:
        assert len(ledger_entries(stack, envelope_id)) == 1, envelope_id


def trace(stack, ident, *args):
    result = ferryctl(stack, "trace", "--json", ident, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_trace_delivered_message(stack):
    (message,) = send(stack, "tracedelivered", 1)
    drain(stack)
    ledger = []
    deadline = time.monotonic() + 30
    while not ledger:
        assert time.monotonic() < deadline, "the message never reached SES"
        ledger = ledger_entries(stack, message.envelope_id)
        time.sleep(0.2)

    by_id = trace(stack, message.envelope_id)
    assert by_id["status"] == "delivered"
    assert by_id["envelope_id"] == message.envelope_id
    (location,) = by_id["locations"]
    assert location["topic"] == TOPIC
    assert location["state"] == "delivered"
    assert location["committed"] > location["offset"]
    (delivered,) = by_id["delivered"]
    assert delivered["region"] == REGION
    assert delivered["ses_message_id"] == ledger[0]["message_id"]
    assert delivered["source_topic"] == TOPIC
    assert delivered["source_partition"] == location["partition"]
    assert delivered["source_offset"] == location["offset"]

    by_message_id = trace(stack, "<tracedelivered-0@%s>" % ORG["domain"])
    assert by_message_id["envelope_id"] == message.envelope_id
    assert by_message_id["message_id"] == "tracedelivered-0@" + ORG["domain"]
    assert by_message_id["status"] == "delivered"

    text = ferryctl(stack, "trace", message.envelope_id)
    assert text.returncode == 0, text.stderr
    assert "status: delivered" in text.stdout
    assert delivered["ses_message_id"] in text.stdout


def test_trace_waiting_message(stack):
    stack.stop_process("deliver-" + REGION)
    try:
        (message,) = send(stack, "tracewaiting", 1)
        waiting = trace(stack, message.envelope_id)
        assert waiting["status"] == "waiting"
        (location,) = waiting["locations"]
        assert location["state"] == "waiting"
        assert location["group"] == GROUP
        assert location["committed"] is None or \
            location["committed"] <= location["offset"]
        assert waiting["delivered"] == []
    finally:
        stack.start_deliver(REGION)
    drain(stack)
    deadline = time.monotonic() + 30
    while trace(stack, message.envelope_id)["status"] != "delivered":
        assert time.monotonic() < deadline, "never delivered after restart"
        time.sleep(0.5)


def test_trace_not_found(stack):
    result = ferryctl(stack, "trace", "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert result.returncode == 2
    assert "not found" in result.stderr
    result = ferryctl(stack, "trace", "--since", "-1m", "<no-such@example>")
    assert result.returncode == 2
