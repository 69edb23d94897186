"""The failover controller against a real broker and ses-local.

SES in us-east-1 is made unhealthy in both of the controller's sources:
ses-local's sending is paused (GetAccount reports SendingEnabled false)
and the test produces ferry.health records that count region_down, as a
stopped worker would. The controller must then go PRIMARY ->
DRAINING_PRIMARY, wait until group ferry-deliver.us-east-1 has no
members, copy its offsets to ferry-takeover.us-east-1 and publish
SECONDARY; after healing and the failback dwell it must come back through
DRAINING_SECONDARY to PRIMARY. A missing identity in us-west-2 keeps it in
PRIMARY, and a controller killed with SIGKILL carries on from the state
stored in ferry.control.
"""

import json
import os
import re
import signal
import smtplib
import threading
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import ferrystack

REGION = "us-east-1"
SECONDARY = "us-west-2"
TOPIC = "mail." + REGION
BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 200
CONTROLLER_KEYS = """controller:
  probe_interval_ms: 300
  probe_timeout_ms: 2000
  probe_failure_seconds: 2
  health_window_seconds: 4
  health_failure_percent: 50
  failback_dwell_seconds: 5
  readiness_interval_seconds: 1
  drain_check_interval_ms: 300
"""
STATES = {1: "PRIMARY", 2: "DRAINING_PRIMARY", 3: "SECONDARY",
          4: "DRAINING_SECONDARY"}


# Protocol buffers by hand: the tests have no generated Python code.

def varint(value):
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, value):
    if isinstance(value, str):
        data = value.encode()
        return varint(number << 3 | 2) + varint(len(data)) + data
    return varint(number << 3) + varint(value)


def read_varint(data, pos):
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def parse(data):
    """Return {field number: value} of one message; last value wins."""
    fields, pos = {}, 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        if key & 7 == 0:
            fields[key >> 3], pos = read_varint(data, pos)
        elif key & 7 == 2:
            size, pos = read_varint(data, pos)
            fields[key >> 3] = data[pos:pos + size]
            pos += size
        else:
            raise ValueError("unexpected wire type %d" % (key & 7))
    return fields


def health_record(region, down):
    """A ferry.health record of one 1 s interval that just ended."""
    now = int(time.time() * 1000)
    return (field(1, region) + field(2, "e2e-test:1") +
            field(3, now - 1000) + field(4, 1000) +
            (field(8, 3) + field(12, "region_down") if down
             else field(5, 10)))


def control_states(stack, region=REGION):
    """Return the state records of region in ferry.control, oldest first."""
    consumer = Consumer({"bootstrap.servers": "127.0.0.1:%d"
                         % stack.kafka_port,
                         "group.id": "e2e-control-reader",
                         "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition("ferry.control", 0, 0)])
    states = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is None:
            continue
        if msg.error():
            break
        record = parse(msg.value())
        if 1 not in record:
            continue            # an operator command
        state = parse(record[1])
        if state.get(1, b"").decode() == region:
            states.append({"state": STATES[state.get(2, 0)],
                           "epoch": state.get(3, 0),
                           "hold": bool(state.get(7, 0))})
    consumer.close()
    return states


def ses_control(stack, region, path, document):
    request = urllib.request.Request(
        "http://127.0.0.1:%d/_ferry/%s" % (stack.ses_ports[region], path),
        data=json.dumps(document).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


class HealthFeed:
    """Produces a ferry.health record of REGION every 0.5 s."""

    def __init__(self, stack):
        self.producer = Producer({"bootstrap.servers": "127.0.0.1:%d"
                                  % stack.kafka_port})
        self.down = False
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.producer.produce("ferry.health", key=REGION,
                                  value=health_record(REGION, self.down))
            self.producer.flush(5)
            time.sleep(0.5)

    def stop(self):
        self.running = False
        self.thread.join()


def wait_for_log(stack, name, pattern, timeout=60, after=0):
    """Wait until the log of name matches pattern past byte after."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        with open(stack.log_path(name), "rb") as f:
            f.seek(after)
            text = f.read().decode("utf-8", "replace")
        if regex.search(text):
            return
        time.sleep(0.2)
    pytest.fail("no %r in the log of %s:\n%s"
                % (pattern, name, stack.tail(name, 40)))


def log_size(stack, name):
    return os.path.getsize(stack.log_path(name))


def committed(stack, group):
    admin = AdminClient({"bootstrap.servers": "127.0.0.1:%d"
                         % stack.kafka_port})
    from confluent_kafka import ConsumerGroupTopicPartitions
    future = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group]
    return {tp.partition: tp.offset
            for tp in future.result().topic_partitions
            if tp.topic == TOPIC}


def send_messages(stack, count):
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        for i in range(count):
            smtp.sendmail("sender@acme.example", ["rcpt@example.net"],
                          "Subject: controller %d\r\n\r\nbody %d\r\n"
                          % (i, i))


@pytest.fixture(scope="module")
def cstack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("controller"))
    with ferrystack.Stack(state_dir, base_port=BASE_PORT,
                          log=lambda text: None) as running:
        config = os.path.join(state_dir, "controller.yaml")
        with open(running.config_path) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text + CONTROLLER_KEYS)
        running.controller_config = config
        ses_control(running, SECONDARY, "identities",
                    {"identities": ["acme.example", "lumiere.example"]})
        yield running


def test_not_ready_stays_primary(cstack):
    ses_control(cstack, SECONDARY, "identities",
                {"identities": ["lumiere.example"]})
    ses_control(cstack, REGION, "sending", {"enabled": False})
    feed = HealthFeed(cstack)
    feed.down = True
    cstack.start_controller(cstack.controller_config)
    try:
        wait_for_log(cstack, "controller",
                     r"alert region=us-east-1 .*acme\.example")
        time.sleep(2)
        states = control_states(cstack)
        assert [s["state"] for s in states] == ["PRIMARY"]
    finally:
        feed.stop()
        ses_control(cstack, REGION, "sending", {"enabled": True})
        ses_control(cstack, SECONDARY, "identities",
                    {"identities": ["acme.example", "lumiere.example"]})
        assert cstack.stop_process("controller") == 0


def test_failover_and_failback(cstack):
    send_messages(cstack, 5)
    deadline = time.monotonic() + 60
    while len(committed(cstack, "ferry-deliver." + REGION)) == 0:
        assert time.monotonic() < deadline, "worker committed nothing"
        time.sleep(0.5)

    start = log_size(cstack, "controller")
    cstack.start_controller(cstack.controller_config)
    feed = HealthFeed(cstack)
    try:
        # Down in both sources: drain, but wait for the worker to leave.
        ses_control(cstack, REGION, "sending", {"enabled": False})
        feed.down = True
        wait_for_log(cstack, "controller", r"transition region=us-east-1 "
                     r"from=PRIMARY to=DRAINING_PRIMARY", after=start)
        time.sleep(2)
        assert control_states(cstack)[-1]["state"] == "DRAINING_PRIMARY"

        source = committed(cstack, "ferry-deliver." + REGION)
        cstack.stop_process("deliver-" + REGION)
        wait_for_log(cstack, "controller", r"transition region=us-east-1 "
                     r"from=DRAINING_PRIMARY to=SECONDARY", after=start)
        target = committed(cstack, "ferry-takeover." + REGION)
        assert sorted(target) == list(range(len(target)))
        for partition, offset in target.items():
            assert offset == source.get(partition, 0), partition

        # Healed: back after the dwell, through DRAINING_SECONDARY.
        ses_control(cstack, REGION, "sending", {"enabled": True})
        feed.down = False
        wait_for_log(cstack, "controller", r"transition region=us-east-1 "
                     r"from=SECONDARY to=DRAINING_SECONDARY", after=start)
        wait_for_log(cstack, "controller", r"transition region=us-east-1 "
                     r"from=DRAINING_SECONDARY to=PRIMARY", after=start)
        states = [s["state"] for s in control_states(cstack)]
        assert states[-4:] == ["DRAINING_PRIMARY", "SECONDARY",
                               "DRAINING_SECONDARY", "PRIMARY"]
        epochs = [s["epoch"] for s in control_states(cstack)]
        assert epochs == sorted(set(epochs))
    finally:
        feed.stop()
        ses_control(cstack, REGION, "sending", {"enabled": True})
        assert cstack.stop_process("controller") == 0


def test_restart_continues_from_stored_state(cstack):
    cstack.start_deliver(REGION)
    start = log_size(cstack, "controller")
    cstack.start_controller(cstack.controller_config)
    feed = HealthFeed(cstack)
    try:
        ses_control(cstack, REGION, "sending", {"enabled": False})
        feed.down = True
        wait_for_log(cstack, "controller", r"transition region=us-east-1 "
                     r"from=PRIMARY to=DRAINING_PRIMARY", after=start)
        epoch = control_states(cstack)[-1]["epoch"]

        # SIGKILL mid-way, then a new process with the stored state.
        cstack.stop_process("controller", sig=signal.SIGKILL)
        start = log_size(cstack, "controller")
        cstack.start_controller(cstack.controller_config)
        wait_for_log(cstack, "controller", r"loaded region=us-east-1 "
                     r"state=DRAINING_PRIMARY epoch=%d " % epoch, after=start)
        wait_for_log(cstack, "controller", r"lease-acquired", after=start)

        cstack.stop_process("deliver-" + REGION)
        wait_for_log(cstack, "controller", r"transition region=us-east-1 "
                     r"from=DRAINING_PRIMARY to=SECONDARY epoch=%d"
                     % (epoch + 1), after=start)
    finally:
        feed.stop()
        ses_control(cstack, REGION, "sending", {"enabled": True})
        cstack.stop_process("controller")
