"""ferry-deliver against SES failures, on a real broker and ses-local.

Each test sets a fault on the us-east-1 ses-local (POST /_ferry/faults),
sends mail of the organization acme through ferry-ingress to
mail.us-east-1 and runs one or two ferry-deliver workers of its own. It
then checks three sources of truth: the ses-local ledger (what SES
accepted), the dead-letter topic mail.us-east-1.dead, and the committed
offsets of the group ferry-deliver.us-east-1.

A watcher thread checks from outside that no offset is committed past a
message that is not done. It reads the committed offsets first, then the
ledger and the dead-letter topic, and every record below a committed
offset must already be in one of the two.
"""

import collections
import hashlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, \
    TopicPartition

import corpus
import ferrystack
import summary
from conftest import BASE_PORT

REGION = "us-east-1"
TOPIC = "mail.us-east-1"
DEAD_TOPIC = "mail.us-east-1.dead"
GROUP = "ferry-deliver.us-east-1"
GROUPS = [GROUP, GROUP + ".pinned"]
ORG = ferrystack.ORGANIZATIONS[0]       # acme: us-east-1, mail.us-east-1
PARTITIONS = 3                          # of each topic, from kafka-local

# Clear of the shared stack (BASE_PORT) and of per-test stacks (+100).
CASES_PORT = BASE_PORT + 200

# Short backoffs, so a stopped region is probed again within a second.
# The session timeout lets a killed worker's partitions move in 10 s. The
# poll interval of 30 s is shorter than the throttling window of
# test_throttled_minute_no_rebalance, which checks that backoff does not
# cost the group membership.
DELIVER_SETTINGS = {
    "retry_initial_ms": 100,
    "retry_max_ms": 1000,
    "request_timeout_ms": 2000,
}
CONSUMER_PROPERTIES = {
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 1000,
    "max.poll.interval.ms": 30000,
}

# The watcher thread and the test share the Kafka clients of this module.
# NOTE: confluent-kafka 2.16.1's AdminClient.list_consumer_group_offsets
# crashed the interpreter (SIGSEGV in
# rd_kafka_ListConsumerGroupOffsetsResponse_parse) while the workers
# committed, so committed() fetches the offsets with a consumer, and only
# one client exists at a time.
KAFKA_CLIENTS_LOCK = threading.Lock()
READER_NUMBERS = itertools.count()

ENVELOPE_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHUNK_SIZE = 524288

LIBFAKETIME_PATHS = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                     "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]


class CaseStack(ferrystack.Stack):
    """A Stack whose workers the tests start and stop themselves."""

    def write_config(self):
        super().write_config()
        with open(self.config_path) as f:
            text = f.read()
        for key, value in DELIVER_SETTINGS.items():
            text = re.sub(r"(?m)^  %s: .*$" % key, "  %s: %d" % (key, value),
                          text)
        properties = "".join("    %s: %d\n" % item
                             for item in CONSUMER_PROPERTIES.items())
        text = text.replace("    client.id: ferry-local\n",
                            "    client.id: ferry-local\n" + properties)
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        self.write_config()
        self.start_kafka()
        for region in self.regions:
            self.start_ses(region)
        self.start_ingress()

    def restart_ses(self, region, env=None, extra=()):
        """Start ses-local of region again, with more environment variables
        (env) and options (extra)."""
        self.stop_process("ses-" + region)
        port = self.ses_ports[region]
        argv = [
            sys.executable, os.path.join(ferrystack.ROOT, "scripts",
                                         "ses-local"),
            "--region", region, "--port", str(port),
            "--state-dir", self.ses_dir(region),
            "--access-key-id", ferrystack.ACCESS_KEY_ID,
            "--secret-access-key", ferrystack.SECRET_ACCESS_KEY] + list(extra)
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = self.spawn("ses-" + region, argv, env=full_env)
        assert ferrystack.wait_for_port(port, 20, proc), \
            self.tail("ses-" + region)

    def start_worker(self, name, env=None):
        """Start a ferry-deliver of us-east-1 logging to deliver-NAME.log;
        env entries replace those of daemon_env()."""
        full_env = self.daemon_env()
        full_env.update(env or {})
        if os.path.exists(self.log_path("deliver-" + name)):
            os.remove(self.log_path("deliver-" + name))
        argv = [os.path.join(ferrystack.BUILD, "ferry-deliver"),
                "-c", self.config_path, "--region", REGION]
        proc = self.spawn("deliver-" + name, argv, env=full_env)
        time.sleep(0.2)
        assert proc.poll() is None, self.tail("deliver-" + name)
        return proc

    def worker_log(self, name):
        with open(self.log_path("deliver-" + name), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop_workers(self):
        for name in [n for n in self.processes if n.startswith("deliver-")]:
            self.stop_process(name)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("cases"))
    with CaseStack(state_dir, base_port=CASES_PORT,
                   log=lambda text: None) as running:
        yield running


@pytest.fixture
def stack(cases):
    """The module's stack, drained and without a fault or a worker at the
    start and at the end of each test. It replaces the conftest's shared
    stack in this module."""
    ses_control(cases, "DELETE", "/_ferry/faults")
    yield cases
    ses_control(cases, "DELETE", "/_ferry/faults")
    try:
        if workers_running(cases) == 0:
            cases.start_worker("cleanup")
        assert wait_drained(cases, timeout=90) == 0
    finally:
        cases.stop_workers()
    assert cases.crashed() == []


def workers_running(stack):
    return sum(1 for n in stack.processes if n.startswith("deliver-"))


# ses-local

def ses_control(stack, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (stack.ses_ports[REGION], path),
        data=data, method=method,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def set_fault(stack, fault, **fields):
    fields["fault"] = fault
    return ses_control(stack, "POST", "/_ferry/faults", fields)


def outcomes(stack, since=None):
    """Return the count of each request outcome of ses-local, minus the
    counts in since."""
    counts = collections.Counter(
        ses_control(stack, "GET", "/_ferry/stats")["by_outcome"])
    if since is not None:
        counts.subtract(since)
    return counts


def receipts(stack):
    """Return {envelope id: number of ledger entries} of us-east-1. The
    ledger is read while ses-local appends to it, so a last line without
    its newline is left for the next call."""
    path = os.path.join(stack.ses_dir(REGION), "ledger.jsonl")
    if not os.path.exists(path):
        return collections.Counter()
    with open(path) as f:
        lines = f.read().split("\n")[:-1]
    return collections.Counter(json.loads(line)["envelope_id"]
                               for line in lines if line.strip())


# Mail and Kafka

def send(stack, tag, count):
    """Send count messages through the ingress; return their envelope ids."""
    messages = corpus.small_messages(tag, count, ORG)
    corpus.send_all(messages, stack.smtp_port, sessions=2, timeout=60)
    for m in messages:
        assert m.code == 250, "%s: %s %s" % (m.name, m.code, m.reply)
    return [m.envelope_id for m in messages]


def bootstrap(stack):
    return "127.0.0.1:%d" % stack.kafka_port


def wait_drained(stack, timeout):
    return summary.wait_drained(bootstrap(stack), GROUPS, timeout)


def committed(stack):
    """Return {partition: committed offset or None} of mail.us-east-1.

    A consumer of the group that never subscribes only fetches the group's
    offsets and does not join it. The group coordinator may move while the
    broker starts (NOT_COORDINATOR), so a failed fetch is repeated."""
    for attempt in range(20):
        with KAFKA_CLIENTS_LOCK:
            consumer = Consumer({"bootstrap.servers": bootstrap(stack),
                                 "group.id": GROUP,
                                 "enable.auto.commit": False})
            try:
                partitions = consumer.committed(
                    [TopicPartition(TOPIC, p) for p in range(PARTITIONS)],
                    timeout=10)
                return {tp.partition: tp.offset if tp.offset >= 0 else None
                        for tp in partitions}
            except KafkaException:
                if attempt == 19:
                    raise
            finally:
                consumer.close()
        time.sleep(0.5)


def read_topic(stack, topic):
    """Return every record of topic as (partition, offset, key, headers)."""
    with KAFKA_CLIENTS_LOCK:
        return read_topic_unlocked(stack, topic)


def read_topic_unlocked(stack, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap(stack),
                         "group.id": "ferry-cases-reader-%d"
                                     % next(READER_NUMBERS),
                         "enable.auto.commit": False})
    records = []
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
                records.append((p, record.offset(), record.key().decode(),
                                dict((k, v.decode()) for k, v in
                                     record.headers() or [])))
                seen = record.offset() + 1
    finally:
        consumer.close()
    return records


def dead_letters(stack, ids=None):
    """Return the dead-letter records, of the given envelope ids only."""
    return [r for r in read_topic(stack, DEAD_TOPIC)
            if ids is None or r[2] in ids]


def commit_violations(stack):
    """Return the records below a committed offset that are neither in the
    ledger nor dead-lettered. Offsets are read before the outcomes, so an
    outcome recorded before its commit is always seen."""
    offsets = committed(stack)
    delivered = receipts(stack)
    dead = {(int(h["ferry-source-partition"]), int(h["ferry-source-offset"]))
            for _, _, _, h in read_topic(stack, DEAD_TOPIC)}
    violations = []
    for p, offset, key, _ in read_topic(stack, TOPIC):
        limit = offsets.get(p)
        if limit is None or offset >= limit:
            continue
        if delivered[key] == 0 and (p, offset) not in dead:
            violations.append((p, offset, key, limit))
    return violations


class CommitWatcher:
    """Checks commit_violations() about once a second in a thread."""

    def __init__(self, stack):
        self.stack = stack
        self.violations = []
        self.checks = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        while not self.stop_event.is_set():
            self.violations += commit_violations(self.stack)
            self.checks += 1
            self.stop_event.wait(1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()


def wait_until(condition, timeout, step=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def assert_each_once(stack, ids):
    counts = receipts(stack)
    wrong = {i: counts[i] for i in ids if counts[i] != 1}
    assert wrong == {}, "receipts other than one: %s" % wrong


def assert_held(stack, ids, before):
    """Nothing of ids delivered or dead-lettered, and no offset moved."""
    counts = receipts(stack)
    assert [i for i in ids if counts[i] > 0] == []
    assert dead_letters(stack, set(ids)) == []
    assert committed(stack) == before


def events(log, event):
    return [line for line in log.splitlines()
            if (" %s " % event) in line or line.endswith(" " + event)]


# Throttling, daily quota, transient failures

def test_throttling_each_delivered_once(stack):
    start = outcomes(stack)
    set_fault(stack, "throttle", probability=0.2)
    stack.start_worker("a")
    with CommitWatcher(stack) as watcher:
        ids = send(stack, "throttle", 60)
        assert wait_drained(stack, timeout=90) == 0
    assert outcomes(stack, start)["TooManyRequestsException"] > 0
    assert_each_once(stack, ids)
    assert dead_letters(stack, set(ids)) == []
    assert watcher.checks > 0
    assert watcher.violations == []


def test_daily_quota_holds_everything(stack):
    stack.start_worker("a")
    assert wait_drained(stack, timeout=60) == 0
    before = committed(stack)
    start = outcomes(stack)
    set_fault(stack, "daily_quota")
    ids = send(stack, "quota", 20)
    assert wait_until(lambda: outcomes(stack, start)
                      ["TooManyRequestsException"] >= 3, timeout=30)
    time.sleep(3)
    assert_held(stack, ids, before)
    assert events(stack.worker_log("a"), "region-down") != []

    ses_control(stack, "DELETE", "/_ferry/faults")
    assert wait_drained(stack, timeout=60) == 0
    assert_each_once(stack, ids)


def test_transient_failures_lose_nothing(stack):
    """503s, resets, hangs past the request timeout, then responses lost
    after SES accepted (the ambiguous case), while mail keeps coming."""
    stack.start_worker("a")
    faults = [("error", {"status": 503}), ("reset", {}), ("hang", {}),
              ("drop_response", {"probability": 1.0, "count": 3})]
    ids = []
    start = outcomes(stack)
    with CommitWatcher(stack) as watcher:
        for fault, fields in faults:
            set_fault(stack, fault, **fields)
            ids += send(stack, "transient-" + fault, 10)
            time.sleep(4)
        ses_control(stack, "DELETE", "/_ferry/faults")
        assert wait_drained(stack, timeout=90) == 0

    seen = outcomes(stack, start)
    for outcome in ["ServiceUnavailable", "reset", "hang", "drop_response"]:
        assert seen[outcome] > 0, "fault %s never hit: %s" % (outcome, seen)
    counts = receipts(stack)
    assert [i for i in ids if counts[i] == 0] == []
    extra = sum(counts[i] - 1 for i in ids)
    assert extra <= seen["drop_response"]
    assert dead_letters(stack, set(ids)) == []
    assert watcher.violations == []


# Sending paused (SES v2 and v1 wording), and a genuine rejection

@pytest.mark.parametrize("fault,fields", [
    ("sending_paused", {}),
    ("message_rejected",
     {"message": "Sending paused for this account. For more information, "
                 "please check the AWS Management Console."}),
], ids=["v2-sending-paused", "v1-message-rejected-paused"])
def test_sending_paused_not_dead_lettered(stack, fault, fields):
    stack.start_worker("a")
    assert wait_drained(stack, timeout=60) == 0
    before = committed(stack)
    start = outcomes(stack)
    set_fault(stack, fault, **fields)
    ids = send(stack, "paused-" + fault, 10)
    code = "SendingPausedException" if fault == "sending_paused" \
        else "MessageRejected"
    assert wait_until(lambda: outcomes(stack, start)[code] >= 3,
                      timeout=30)
    assert_held(stack, ids, before)
    assert events(stack.worker_log("a"), "region-down") != []

    ses_control(stack, "DELETE", "/_ferry/faults")
    assert wait_drained(stack, timeout=60) == 0
    assert_each_once(stack, ids)


def test_content_rejection_dead_lettered(stack):
    ids = send(stack, "virus", 10)
    set_fault(stack, "message_rejected", count=1)
    stack.start_worker("a")
    with CommitWatcher(stack) as watcher:
        assert wait_drained(stack, timeout=60) == 0

    dead = dead_letters(stack, set(ids))
    assert len(dead) == 1
    _, _, rejected, headers = dead[0]
    assert headers["ferry-error-code"] == "MessageRejected"
    assert "virus detected" in headers["ferry-error-message"]
    assert headers["ferry-source-topic"] == TOPIC
    counts = receipts(stack)
    assert counts[rejected] == 0
    assert [i for i in ids if i != rejected and counts[i] != 1] == []
    assert watcher.violations == []


# A record too large for SES after base64

def protobuf_field(number, value):
    """Encode one protobuf field: bytes/str as length-delimited, int as
    varint."""
    def varint(n):
        out = bytearray()
        while True:
            byte = n & 0x7f
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def envelope_chunks(message, sender, recipient):
    """Return (id, records) of message as ferry-ingress writes it, split
    into CHUNK_SIZE slices (field numbers of proto/envelope.proto)."""
    envelope_id = "0" + "".join(random.choice(ENVELOPE_ID_ALPHABET)
                                for _ in range(25))
    head = b"".join([
        protobuf_field(1, envelope_id), protobuf_field(2, ORG["name"]),
        protobuf_field(3, REGION), protobuf_field(4, 1),
        protobuf_field(6, sender), protobuf_field(7, recipient),
        protobuf_field(8, "127.0.0.1"), protobuf_field(9, "cases.test"),
        protobuf_field(11, int(time.time() * 1000)),
        protobuf_field(12, len(message)),
        protobuf_field(13, hashlib.sha256(message).digest())])
    count = (len(message) + CHUNK_SIZE - 1) // CHUNK_SIZE
    records = [head + protobuf_field(14, i) + protobuf_field(15, count)
               + protobuf_field(16, message[i * CHUNK_SIZE:
                                            (i + 1) * CHUNK_SIZE])
               for i in range(count)]
    return envelope_id, records


def test_oversized_record_dead_lettered(stack):
    """32,000,000 bytes become 42,666,668 after base64, over SES's 40 MiB.
    The ingress would reject the message, so it is written to Kafka
    directly, as a replay of data from an older configuration would."""
    header = ("From: big@%s\r\nTo: rcpt@example.org\r\nSubject: too large"
              "\r\n\r\n" % ORG["domain"]).encode()
    line = b"x" * 998 + b"\r\n"
    message = header + line * ((32000000 - len(header)) // len(line))
    message += b"y" * (32000000 - len(message) - 2) + b"\r\n"
    assert len(message) == 32000000
    big_id, records = envelope_chunks(message, "big@" + ORG["domain"],
                                      "rcpt@example.org")
    producer = Producer({"bootstrap.servers": bootstrap(stack),
                         "enable.idempotence": True, "acks": "all"})
    for value in records:
        producer.produce(TOPIC, key=big_id, value=value)
    assert producer.flush(30) == 0
    after = send(stack, "after-big", 5)

    stack.start_worker("a")
    assert wait_drained(stack, timeout=90) == 0
    dead = dead_letters(stack, {big_id})
    assert len(dead) == len(records)
    assert {h["ferry-error-code"] for _, _, _, h in dead} == \
        {"MessageTooLarge"}
    assert receipts(stack)[big_id] == 0
    assert_each_once(stack, after)


# Credentials: a session token with a trailing space, a wrong secret

def test_session_token_trailing_space(stack):
    start = outcomes(stack)
    stack.start_worker("a", {"AWS_SESSION_TOKEN": "ferry-session-token "})
    ids = send(stack, "token", 5)
    assert wait_drained(stack, timeout=60) == 0
    assert_each_once(stack, ids)
    assert outcomes(stack, start)["SignatureDoesNotMatch"] == 0


def test_wrong_secret_is_local_fault(stack):
    assert wait_drained(stack, timeout=60) == 0
    before = committed(stack)
    start = outcomes(stack)
    stack.start_worker("wrong", {"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    ids = send(stack, "secret", 10)
    assert wait_until(lambda: outcomes(stack, start)
                      ["SignatureDoesNotMatch"] >= 3, timeout=30)
    assert_held(stack, ids, before)
    assert events(stack.worker_log("wrong"), "local-fault") != []

    stack.stop_process("deliver-wrong")
    stack.start_worker("right")
    assert wait_drained(stack, timeout=60) == 0
    assert_each_once(stack, ids)


def test_shared_credentials_file_profile(stack, tmp_path):
    path = tmp_path / "credentials"
    path.write_text(
        "[default]\naws_access_key_id = AKIDWRONG\n"
        "aws_secret_access_key = wrong\n\n"
        "[ferry]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
        % (ferrystack.ACCESS_KEY_ID, ferrystack.SECRET_ACCESS_KEY))
    stack.start_worker("file", {
        "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(path), "AWS_PROFILE": "ferry"})
    ids = send(stack, "profile", 5)
    assert wait_drained(stack, timeout=60) == 0
    assert_each_once(stack, ids)


def start_sts(stack, token, duration_seconds):
    """Start scripts/sts-local on the stack's port base + 25."""
    port = stack.base_port + 25
    argv = [sys.executable,
            os.path.join(ferrystack.ROOT, "scripts", "sts-local"),
            "--port", str(port), "--token", token,
            "--secret-access-key", ferrystack.SECRET_ACCESS_KEY,
            "--duration-seconds", str(duration_seconds)]
    proc = stack.spawn("sts", argv)
    assert ferrystack.wait_for_port(port, 20, proc), stack.tail("sts")
    return port


def web_identity_env(port, token_file):
    return {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
            "AWS_ROLE_ARN": "arn:aws:iam::000000000000:role/ferry-deliver",
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_STS_ENDPOINT": "http://127.0.0.1:%d" % port}


def test_web_identity_keys_renewed(stack, tmp_path):
    """Keys from sts-local live 6 s, so the worker renews them half-way,
    before the second batch."""
    token_file = tmp_path / "token"
    token_file.write_text("ferry-web-identity-token\n")
    port = start_sts(stack, "ferry-web-identity-token", 6)
    try:
        stack.start_worker("web", web_identity_env(port, token_file))
        first = send(stack, "web-identity-1", 5)
        assert wait_drained(stack, timeout=60) == 0
        time.sleep(4)
        second = send(stack, "web-identity-2", 5)
        assert wait_drained(stack, timeout=60) == 0
        with urllib.request.urlopen("http://127.0.0.1:%d/_sts/stats" % port,
                                    timeout=10) as response:
            stats = json.loads(response.read())
    finally:
        stack.stop_process("sts")
    assert_each_once(stack, first + second)
    assert stats["issued"] >= 2
    assert len(events(stack.worker_log("web"), "credentials-fetched")) >= 2
    # Each renewal brings a new temporary key id, and ses-local logs the
    # key id of every request it accepts, so the renewed keys were used.
    with open(stack.log_path("ses-" + REGION)) as f:
        key_ids = set(re.findall(r"access_key_id=(ASIA\w+)", f.read()))
    assert len(key_ids) >= 2


def test_web_identity_rejected_token(stack, tmp_path):
    """A token STS rejects stops the worker at start, with the STS error."""
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token")
    port = start_sts(stack, "ferry-web-identity-token", 60)
    env = stack.daemon_env()
    env.update(web_identity_env(port, token_file))
    try:
        result = subprocess.run(
            [os.path.join(ferrystack.BUILD, "ferry-deliver"), "-c",
             stack.config_path, "--region", REGION],
            env=env, capture_output=True, text=True, timeout=60)
    finally:
        stack.stop_process("sts")
    assert result.returncode == 1
    assert "InvalidIdentityToken" in result.stderr


# Clock skew

def test_clock_skew_corrected_from_date(stack):
    """ses-local runs 6 minutes ahead under libfaketime, so the worker's
    first signatures fall outside SigV4's 5-minute window. After that it
    signs with the offset it read from the Date header."""
    library = next((path for path in LIBFAKETIME_PATHS
                    if os.path.exists(path)), None)
    if library is None:
        pytest.skip("libfaketime is not installed (Debian package "
                    "libfaketime)")
    # Preloaded directly: the faketime command would stand between the
    # test and ses-local and not pass SIGTERM on.
    stack.restart_ses(REGION, env={"LD_PRELOAD": library,
                                   "FAKETIME": "+6m"})
    try:
        stack.start_worker("a")
        with CommitWatcher(stack) as watcher:
            ids = send(stack, "skew", 10)
            assert wait_drained(stack, timeout=60) == 0
        skew_errors = outcomes(stack)["InvalidSignatureException"]
        log = stack.worker_log("a")
        stack.stop_workers()
    finally:
        stack.restart_ses(REGION)
    assert skew_errors > 0
    assert events(log, "clock-offset") != []
    assert_each_once(stack, ids)
    assert dead_letters(stack, set(ids)) == []
    assert watcher.violations == []


# Group membership while SES throttles, crashes and rebalances

def wait_assigned(stack, names, partitions=3, timeout=60, topic=TOPIC):
    """Wait until the workers together hold every partition of topic."""
    def held():
        total = 0
        for name in names:
            log = stack.worker_log(name)
            total += len([l for l in events(log, "assigned")
                          if "topic=%s " % topic in l])
            total -= len([l for l in events(log, "revoked")
                          if "topic=%s " % topic in l])
        return total == partitions
    assert wait_until(held, timeout), [stack.tail("deliver-" + n)
                                       for n in names]


def membership_events(stack, names):
    return sum(len(events(stack.worker_log(n), e))
               for n in names for e in ["assigned", "revoked",
                                        "rebalance-failed"])


def test_throttled_minute_no_rebalance(stack):
    """429 on every call for 45 s, longer than max.poll.interval.ms
    (30 s). The workers keep polling while paused, so the group stays
    stable, and each message is accepted once when throttling ends."""
    names = ["a", "b"]
    for name in names:
        stack.start_worker(name)
    # The pinned group rebalances on its own, and its events count too.
    wait_assigned(stack, names)
    wait_assigned(stack, names, topic=TOPIC + ".pinned")
    time.sleep(3)
    before = membership_events(stack, names)
    start = outcomes(stack)
    set_fault(stack, "throttle", seconds=45)
    started = time.monotonic()
    ids = send(stack, "minute", 30)
    time.sleep(max(0, 45 - (time.monotonic() - started)))
    assert membership_events(stack, names) == before
    assert outcomes(stack, start)["TooManyRequestsException"] >= 10
    assert wait_drained(stack, timeout=60) == 0
    assert_each_once(stack, ids)
    assert membership_events(stack, names) == before


def test_killed_worker_loses_nothing(stack):
    # 1 s per request keeps the batch of 200 going for over 10 s at 16 in
    # flight, so the kill lands in the middle of it.
    stack.restart_ses(REGION, extra=["--latency-ms", "1000"])
    try:
        ids = send(stack, "kill", 200)
        stack.start_worker("a")
        assert wait_until(lambda: sum(1 for i in ids
                                      if receipts(stack)[i]) >= 40, 60)
        stack.stop_process("deliver-a", sig=signal.SIGKILL)
        delivered_before = sum(1 for i in ids if receipts(stack)[i])
        assert delivered_before < len(ids), "the batch ended before the kill"
        stack.start_worker("b")
        assert wait_drained(stack, timeout=90) == 0
    finally:
        stack.restart_ses(REGION)
    counts = receipts(stack)
    assert [i for i in ids if counts[i] == 0] == []
    assert max(counts[i] for i in ids) <= 2


def test_rebalance_in_flight_repeats_nothing(stack):
    stack.restart_ses(REGION, extra=["--latency-ms", "300"])
    try:
        ids = send(stack, "rebalance", 150)
        stack.start_worker("a")
        assert wait_until(lambda: sum(1 for i in ids
                                      if receipts(stack)[i]) >= 20, 60)
        with CommitWatcher(stack) as watcher:
            stack.start_worker("b")
            assert wait_drained(stack, timeout=120) == 0
        log = stack.worker_log("a")
    finally:
        stack.restart_ses(REGION)
    assert events(log, "revoked") != []
    assert_each_once(stack, ids)
    assert watcher.violations == []
