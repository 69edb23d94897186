"""ferryctl against a running Ferry: lag, replay and trace.

Lag must agree with Kafka's own consumer-groups tool, also while the
delivery workers are stopped and a backlog builds up. Replay must count
and re-publish exactly the records of its time window and leave live
traffic and live group offsets alone. Trace must find a message wherever
it is.
"""

import json
import os
import subprocess
import time

import pytest

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
    messages = []
    for i in range(count):
        data = ("From: %s%d@%s\r\nTo: rcpt%d@example.org\r\n"
                "Subject: ferryctl %s %d\r\n"
                "Message-ID: <%s-%d@%s>\r\n\r\nbody %d\r\n"
                % (tag, i, org["domain"], i, tag, i, tag, i, org["domain"],
                   i)).encode()
        m = corpus.Message("%s-%d" % (tag, i), data)
        m.org = org
        m.sender = "%s%d@%s" % (tag, i, org["domain"])
        m.recipients = ["rcpt%d@example.org" % i]
        messages.append(m)
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
    for command in ["lag"]:
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
