"""Fixtures that run Ferry's daemons against librdkafka's mock cluster.

The mock cluster (build/ferry-mock-kafka) starts in a fraction of a
second. On command it fails the next requests of a kind with a given
broker error, takes a broker down, or moves a partition's leader or a
group's coordinator. These tests check that such broker faults lose and
repeat nothing; the end-to-end tests in tests/e2e run the same daemons on
a real broker.

Ports start at FERRY_TEST_PORT + 400 (default 29492); the mock brokers
take free ports of their own. Every process is stopped by its PID.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import ferrystack  # noqa: E402

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 400
BROKERS = 3
PARTITIONS = 3
US_EAST_TOPIC = "mail.us-east-1"
US_EAST_GROUP = "ferry-deliver.us-east-1"


class MockKafkaError(Exception):
    pass


class MockStack(ferrystack.Stack):
    """A Stack whose Kafka is ferry-mock-kafka with BROKERS brokers."""

    mock = None
    partitions = PARTITIONS     # of every topic
    leader = 3                  # of every partition of mail.us-east-1 only
    coordinator = 1             # of ferry-deliver.us-east-1 only

    def start_kafka(self):
        self.mock_log = open(self.log_path("mock-kafka"), "ab")
        self.mock = subprocess.Popen(
            [os.path.join(ferrystack.BUILD, "ferry-mock-kafka"),
             str(BROKERS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.mock_log, text=True, cwd=ROOT)
        first = self.mock.stdout.readline().split()
        if len(first) != 2 or first[0] != "bootstrap":
            raise ferrystack.StackError("ferry-mock-kafka did not start: %r"
                                        % first)
        self.bootstrap_servers = first[1]
        # Errors injected into the leader reach only the ingress's records
        # of mail.us-east-1 and the fetches of its worker. Errors injected
        # into the coordinator reach only that worker's commits.
        for topic in self.topics():
            self.command("topic %s %d" % (topic, self.partitions))
            for p in range(self.partitions):
                leader = self.leader if topic == US_EAST_TOPIC else 1 + p % 2
                self.command("leader %s %d %d" % (topic, p, leader))
        for region in ferrystack.PRIMARY_REGIONS:
            for suffix in ("", ".pinned"):
                group = "ferry-deliver.%s%s" % (region, suffix)
                coordinator = self.coordinator if group == US_EAST_GROUP else 2
                self.command("coordinator %s %d" % (group, coordinator))
        self.write_config()

    def topics(self):
        """The topics scripts/kafka-local creates on a real broker."""
        names = []
        for region in ferrystack.PRIMARY_REGIONS:
            names += ["mail." + region, "mail.%s.pinned" % region,
                      "mail.%s.dead" % region]
        return names + ["ferry.delivered", "ferry.control", "ferry.health",
                        "ferry.controller.lease"]

    def command(self, line):
        """Send one command to ferry-mock-kafka and return the text after
        "ok" in its reply. Raise MockKafkaError if the command failed."""
        self.mock.stdin.write(line + "\n")
        self.mock.stdin.flush()
        reply = self.mock.stdout.readline().strip()
        if reply.split(" ", 1)[0] != "ok":
            raise MockKafkaError("%s: %s" % (line, reply or "no reply"))
        return reply[2:].strip()

    def stop_kafka(self, keep_data=False):
        if self.mock is None:
            return
        self.mock.stdin.close()
        try:
            self.mock.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.mock.kill()
            self.mock.wait()
        self.mock_log.close()
        self.mock = None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Ferry on a mock cluster, shared by the tests of one module."""
    state_dir = str(tmp_path_factory.mktemp("mock"))
    with MockStack(state_dir, base_port=BASE_PORT,
                   log=lambda text: None) as running:
        yield running
        crashed = running.crashed()
        assert crashed == [], "daemons exited during the tests: %s" % crashed
