"""End to end: real mail over SMTP, a real Kafka broker, the SES endpoint.

What the demo does, with assertions: the SpamAssassin corpus goes through
ferry-ingress and ferry-deliver, and the SES ledgers must show every
accepted message exactly once, unchanged but for the trace header, in the
home region of its organization, after travelling through the topic its
organization's routing calls for.
"""

import collections
import json
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, TopicPartition

import corpus
import ferrystack
import summary

CORPUS_COUNT = 1000
UNKNOWN_DOMAIN = "nobody.example"


def address(messages, tag):
    """Give each message a sender of one organization in turn, and every
    50th one a sender of a domain that no organization owns."""
    orgs = ferrystack.ORGANIZATIONS
    for i, m in enumerate(messages):
        if i % 50 == 49:
            m.sender = "x%d@%s" % (i, UNKNOWN_DOMAIN)
        else:
            m.org = orgs[i % len(orgs)]
            m.sender = "%s%d@%s" % (tag, i, m.org["domain"])
        m.recipients = ["%s%d@example.org" % (tag, i)]


def drain(stack, timeout=180):
    groups = []
    for region in ferrystack.PRIMARY_REGIONS:
        groups.append("ferry-deliver." + region)
        groups.append("ferry-deliver.%s.pinned" % region)
    return summary.wait_drained("127.0.0.1:%d" % stack.kafka_port, groups,
                                timeout)


def ledgers(stack):
    return {r: stack.ses_dir(r) for r in stack.regions}


def topic_keys(stack):
    """Return {envelope id: [topics]} over every mail topic."""
    consumer = Consumer({"bootstrap.servers":
                         "127.0.0.1:%d" % stack.kafka_port,
                         "group.id": "ferry-e2e-reader",
                         "enable.auto.commit": False})
    keys = collections.defaultdict(list)
    try:
        metadata = consumer.list_topics(timeout=10)
        for topic in metadata.topics:
            if not topic.startswith("mail.") or topic.endswith(".dead"):
                continue
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
                    keys[record.key().decode()].append(topic)
                    seen = record.offset() + 1
    finally:
        consumer.close()
    return keys


@pytest.fixture(scope="module")
def corpus_run(stack):
    """Send the corpus once; the tests below check different aspects."""
    messages = corpus.load(CORPUS_COUNT)
    address(messages, "c")
    corpus.send_all(messages, stack.smtp_port)
    lag = drain(stack)
    result = summary.Summary(messages, ledgers(stack),
                             ferrystack.ORGANIZATIONS)
    print(result.format())
    return messages, result, lag


def test_corpus_drains(corpus_run):
    _, _, lag = corpus_run
    assert lag == 0


def test_corpus_valid_mail_accepted(corpus_run):
    messages, _, _ = corpus_run
    for m in messages:
        if m.sender.endswith(UNKNOWN_DOMAIN) or m.problems:
            continue
        assert m.code == 250, "%s: %s %s" % (m.name, m.code, m.reply)


def test_corpus_invalid_mail_rejected(corpus_run):
    messages, result, _ = corpus_run
    invalid = [m for m in messages
               if m.problems and not m.sender.endswith(UNKNOWN_DOMAIN)]
    assert invalid, "the corpus sample holds no invalid mail to check"
    for m in invalid:
        assert m.code == 554, "%s (%s): %s %s" % (
            m.name, ", ".join(m.problems), m.code, m.reply)
        assert m.reply.startswith("5.6.0"), m.reply


def test_corpus_unknown_sender_rejected(corpus_run):
    messages, _, _ = corpus_run
    unknown = [m for m in messages if m.sender.endswith(UNKNOWN_DOMAIN)]
    assert len(unknown) == CORPUS_COUNT // 50
    for m in unknown:
        assert m.code == 550, "%s: %s %s" % (m.name, m.code, m.reply)
        assert m.reply.startswith("5.7.1"), m.reply


def test_corpus_nothing_lost(corpus_run):
    _, result, _ = corpus_run
    assert result.accepted > CORPUS_COUNT * 0.9
    assert [m.name for m in result.lost] == []


def test_corpus_nothing_duplicated(corpus_run):
    _, result, _ = corpus_run
    assert [m.name for m in result.duplicated] == []
    assert result.unexpected == 0


def test_corpus_byte_identical(corpus_run):
    _, result, _ = corpus_run
    assert [m.name for m in result.different] == []
    assert result.identical == result.accepted


def test_corpus_home_region(corpus_run):
    messages, result, _ = corpus_run
    assert [m.name for m in result.wrong_region] == []
    expected = collections.Counter(m.org["home_region"] for m in messages
                                   if m.code == 250)
    assert result.per_region["us-east-1"] == expected["us-east-1"]
    assert result.per_region["eu-west-1"] == expected["eu-west-1"]
    assert result.per_region["us-west-2"] == 0


def test_corpus_topic_routing(stack, corpus_run):
    messages, _, _ = corpus_run
    keys = topic_keys(stack)
    for m in messages:
        if m.code != 250:
            continue
        assert keys[m.envelope_id] == [ferrystack.topic_for(m.org)], m.name


def ses_control(stack, region, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (stack.ses_ports[region], path),
        data=data, method=method,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def test_ses_errors_retried_without_loss(stack, corpus_run):
    """SES errors (503) must delay delivery, never drop or repeat it."""
    ses_control(stack, "us-east-1", "POST", "/_ferry/faults",
                {"fault": "error", "status": 503, "count": 20})
    messages = corpus.load(40)
    address(messages, "r")
    for m in messages:
        m.org = ferrystack.ORGANIZATIONS[0]
        m.sender = m.sender.split("@")[0] + "@" + m.org["domain"]
    messages = [m for m in messages if not m.problems]
    corpus.send_all(messages, stack.smtp_port, sessions=2)
    assert drain(stack) == 0
    ses_control(stack, "us-east-1", "DELETE", "/_ferry/faults")

    entries = collections.Counter(
        e["envelope_id"] for e in summary.read_ledger(
            stack.ses_dir("us-east-1")))
    for m in messages:
        assert m.code == 250, m.reply
        assert entries[m.envelope_id] == 1, m.name


def test_swaks_message_delivered(stack, corpus_run):
    body = "Subject: swaks check\r\n\r\nsent by swaks\r\n"
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % stack.smtp_port,
         "--from", "swaks@acme.example", "--to", "bob@example.org",
         "--helo", "swaks.ferry.test", "--data", body],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    queued = [line for line in result.stdout.splitlines()
              if "<-  250 2.0.0" in line and "queued as" in line]
    assert len(queued) == 1, result.stdout
    envelope_id = corpus.queued_id(queued[0])

    deadline = time.monotonic() + 60
    found = []
    while time.monotonic() < deadline and not found:
        found = [e for e in summary.read_ledger(stack.ses_dir("us-east-1"))
                 if e["envelope_id"] == envelope_id]
        time.sleep(0.5)
    assert len(found) == 1
    assert found[0]["destinations"] == ["bob@example.org"]


def test_swaks_unknown_sender_rejected(stack):
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % stack.smtp_port,
         "--from", "mallory@" + UNKNOWN_DOMAIN, "--to", "bob@example.org",
         "--helo", "swaks.ferry.test"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "<** 550 5.7.1" in result.stdout, result.stdout
