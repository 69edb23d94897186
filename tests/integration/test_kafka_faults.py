"""Broker faults injected with librdkafka's mock cluster.

Each test sends mail of the organization acme (home us-east-1, topic
mail.us-east-1) through ferry-ingress while the mock cluster fails
requests. Then it checks what a user would. Every message got 250, or
451 in the test of a rejected record. After the worker committed the
whole topic, the us-east-1 ses-local ledger contains each accepted
message exactly once.
"""

import collections
import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

import corpus
import ferrystack
import summary

ORG = ferrystack.ORGANIZATIONS[0]
REGION = ORG["home_region"]
TOPIC = "mail." + REGION
GROUP = "ferry-deliver." + REGION


def send(stack, tag, count, sessions=2):
    messages = corpus.small_messages(tag, count, ORG)
    corpus.send_all(messages, stack.smtp_port, sessions=sessions, timeout=90)
    return messages


def receipts(stack):
    """{envelope id: SendEmail calls that SES accepted} of us-east-1."""
    return collections.Counter(
        entry["envelope_id"]
        for entry in summary.read_ledger(stack.ses_dir(REGION)))


def lag(stack):
    """Records of mail.us-east-1 past the group's committed offsets.

    Read with a consumer that never joins the group, because ferryctl lag
    also describes the group, which the mock cluster does not support.
    NOTE: after a DescribeConsumerGroups request to the mock cluster,
    librdkafka 2.0.2 hangs when the client is closed or destroyed, so
    ferryctl lag never exits there."""
    consumer = Consumer({"bootstrap.servers": stack.bootstrap_servers,
                         "group.id": GROUP, "enable.auto.commit": False})
    try:
        total = 0
        for tp in consumer.committed(
                [TopicPartition(TOPIC, p) for p in range(stack.partitions)],
                timeout=10):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(TOPIC, tp.partition), timeout=10)
            total += high - (tp.offset if tp.offset >= 0 else low)
        return total
    finally:
        consumer.close()


def wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)
    return True


def drain(stack, timeout=90):
    """Wait until the group committed every record of mail.us-east-1."""
    last = {}

    def drained():
        try:
            last["lag"] = lag(stack)
        except KafkaException as error:
            last["lag"] = error
        return last["lag"] == 0

    assert wait_until(drained, timeout), \
        "the worker left records uncommitted: %s" % last["lag"]


def assert_each_once(stack, messages):
    codes = [(m.name, m.code, m.reply) for m in messages if m.code != 250]
    assert codes == []
    drain(stack)
    counts = receipts(stack)
    wrong = {m.envelope_id: counts[m.envelope_id] for m in messages
             if counts[m.envelope_id] != 1}
    assert wrong == {}, "SES accepted these other than once: %s" % wrong


def inject(stack, broker, api, count, *errors):
    """Make broker fail its next count requests of api with errors."""
    stack.command("errors %d %s %d %s" % (broker, api, count,
                                          " ".join(errors)))


def pending(stack, broker, api):
    """How many of the errors injected into broker are still unserved."""
    return int(stack.command("pending %d %s" % (broker, api)))


class Sender(threading.Thread):
    """Sends count messages in the background; join() returns them, or
    raises what the sending raised."""

    def __init__(self, stack, tag, count):
        super().__init__()
        self.send_args = (stack, tag, count)
        self.messages = None
        self.error = None

    def run(self):
        try:
            self.messages = send(*self.send_args)
        except Exception as error:      # raised again in join()
            self.error = error

    def join(self, timeout=120):
        super().join(timeout)
        assert not self.is_alive(), "still sending after %d s" % timeout
        if self.error is not None:
            raise self.error
        return self.messages


# Broker stack.leader leads only the partitions of mail.us-east-1, and
# broker stack.coordinator coordinates only its group (see conftest.py).

def test_retriable_produce_errors_each_once(stack):
    inject(stack, stack.leader, "Produce", 12, "NOT_ENOUGH_REPLICAS",
           "NOT_LEADER_FOR_PARTITION", "REQUEST_TIMED_OUT")
    assert_each_once(stack, send(stack, "produce", 30))
    assert pending(stack, stack.leader, "Produce") == 0


def test_rejected_produce_gets_451(stack):
    before = sum(receipts(stack).values())
    inject(stack, stack.leader, "Produce", 3, "INVALID_RECORD")
    rejected = send(stack, "rejected", 3, sessions=1)
    assert [(m.code, m.reply[:5]) for m in rejected] == [(451, "4.3.0")] * 3
    assert pending(stack, stack.leader, "Produce") == 0

    retried = send(stack, "rejected", 3, sessions=1)
    assert_each_once(stack, retried)
    # Only the retries reached SES.
    assert sum(receipts(stack).values()) - before == 3


def test_broker_down_delays_every_reply(stack):
    sender = Sender(stack, "down", 20)
    stack.command("down %d" % stack.leader)
    try:
        sender.start()
        time.sleep(3)
    finally:
        up_at = time.monotonic()
        stack.command("up %d" % stack.leader)
    messages = sender.join()
    # No 250 before the broker could acknowledge.
    early = [m.name for m in messages
             if m.code == 250 and m.replied_at < up_at]
    assert early == [], "250 while the leader was down"
    assert_each_once(stack, messages)


def test_fetch_errors_each_once(stack):
    inject(stack, stack.leader, "Fetch", 20, "NOT_LEADER_FOR_PARTITION",
           "UNKNOWN_TOPIC_OR_PART", "OFFSET_NOT_AVAILABLE")
    # The mail goes out while the worker's fetches are failing.
    assert wait_until(lambda: pending(stack, stack.leader, "Fetch") <= 15, 30)
    assert_each_once(stack, send(stack, "fetch", 30))
    assert wait_until(lambda: pending(stack, stack.leader, "Fetch") == 0, 60)


def test_commit_errors_repeat_nothing_after_restart(stack):
    """Failed commits are made again, so a worker started afterwards
    begins after the last delivered message."""
    inject(stack, stack.coordinator, "OffsetCommit", 12,
           "COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR",
           "REQUEST_TIMED_OUT", "COORDINATOR_LOAD_IN_PROGRESS")
    first = send(stack, "commit", 30)
    assert_each_once(stack, first)
    assert pending(stack, stack.coordinator, "OffsetCommit") == 0

    stack.stop_process("deliver-" + REGION)
    stack.start_deliver(REGION)
    second = send(stack, "commit-after", 5)
    assert_each_once(stack, second)
    assert_each_once(stack, first)


def test_coordinator_and_leader_move_each_once(stack):
    sender = Sender(stack, "move", 40)
    sender.start()
    try:
        stack.command("coordinator %s 2" % GROUP)
        stack.command("leader %s 0 1" % TOPIC)
        assert_each_once(stack, sender.join())
    finally:
        stack.command("coordinator %s %d" % (GROUP, stack.coordinator))
        stack.command("leader %s 0 %d" % (TOPIC, stack.leader))
