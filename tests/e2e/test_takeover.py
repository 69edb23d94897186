"""Takeover workers: SES us-west-2 delivers a failed-over region's mail.

A takeover worker (`ferry-deliver --takeover`) runs beside the controller
and joins group ferry-takeover.us-east-1 only while us-east-1 is in
SECONDARY. Mail accepted during a failover must reach the us-west-2
ledger, mail of pinned organizations must stay in its home region and
wait there, and after the failback the primary worker delivers again.
Every accepted message is delivered exactly once over all ledgers.

The outage test breaks SES us-east-1 in turn with 503 responses, requests
that hang until they time out, refused connections and paused sending,
while a client keeps sending. The controller must fail over on its own
each time and come back after the dwell. FERRY_OUTAGE_MESSAGES sets how
many messages it sends in all (default 800).
"""

import os
import signal
import smtplib
import subprocess
import threading
import time

import pytest

import corpus
import ferrystack
import summary
from test_controller import (REGION, SECONDARY, control_states, log_size,
                             ses_control, wait_for_log)
from test_failover import failover, wait_for_status

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 400
OUTAGE_MESSAGES = int(os.environ.get("FERRY_OUTAGE_MESSAGES", "800"))

# Fast detection for a test: probes every 300 ms, 2 s of failures, and
# worker reports every second over a 6 s window.
CONTROLLER_KEYS = """controller:
  probe_interval_ms: 300
  probe_timeout_ms: 1500
  probe_failure_seconds: 2
  health_window_seconds: 6
  health_failure_percent: 50
  failback_dwell_seconds: 5
  readiness_interval_seconds: 1
  drain_check_interval_ms: 300
"""

# Who sends, and where their mail may be delivered.
SENDERS = {
    "acme": ("a@acme.example", {REGION, SECONDARY}),
    "globex": ("g@globex.example", {REGION}),          # m365_api: pinned
    "lumiere": ("l@lumiere.example", {"eu-west-1", SECONDARY}),
    "bergmann": ("b@bergmann.example", {"eu-west-1"}),  # pinned
}
ALL_REGIONS = [REGION, "eu-west-1", SECONDARY]


class Client:
    """An SMTP client that sends a message per call and remembers the
    envelope id of each accepted message by organization. It starts a new
    session every SESSION_MESSAGES messages, well within the ingress's
    ingress.max_commands (10,000 commands, 4 per message)."""

    SESSION_MESSAGES = 500

    def __init__(self, stack):
        self.port = stack.smtp_port
        self.smtp = None
        self.sent = {org: [] for org in SENDERS}
        self.count = 0

    def send(self, org, tag):
        if self.count % self.SESSION_MESSAGES == 0:
            self.close()
            self.smtp = smtplib.SMTP("127.0.0.1", self.port, timeout=60)
            self.smtp.ehlo("test.ferry.test")
        sender = SENDERS[org][0]
        assert self.smtp.mail(sender)[0] == 250
        assert self.smtp.rcpt("rcpt%d@example.net" % self.count)[0] == 250
        code, reply = self.smtp.data(
            "From: %s\r\nSubject: %s %d\r\n\r\nbody %d\r\n"
            % (sender, tag, self.count, self.count))
        assert code == 250, reply
        self.sent[org].append(corpus.queued_id(reply.decode()))
        self.count += 1

    def close(self):
        if self.smtp is not None:
            self.smtp.quit()
            self.smtp = None


def deliveries(stack):
    """Return {envelope id: [region, ...]} over every ledger."""
    where = {}
    for region in ALL_REGIONS:
        for entry in summary.read_ledger(stack.ses_dir(region)):
            if entry.get("envelope_id"):
                where.setdefault(entry["envelope_id"], []).append(region)
    return where


def wait_all_delivered(stack, ids, timeout=120):
    deadline = time.monotonic() + timeout
    where = {}
    while time.monotonic() < deadline:
        where = deliveries(stack)
        if all(i in where for i in ids):
            return where
        time.sleep(0.5)
    missing = [i for i in ids if i not in where]
    pytest.fail("%d of %d messages not delivered, first %s"
                % (len(missing), len(ids), missing[:3]))


def check_exactly_once(client, where):
    """Each accepted message delivered once, in a region its organization
    allows."""
    for org, ids in client.sent.items():
        allowed = SENDERS[org][1]
        for envelope_id in ids:
            regions = where.get(envelope_id, [])
            assert len(regions) == 1, (org, envelope_id, regions)
            assert regions[0] in allowed, (org, envelope_id, regions)


@pytest.fixture(scope="module")
def tstack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("takeover"))
    # Workers report every second and give up on a request after 3 s.
    with ferrystack.Stack(state_dir, base_port=BASE_PORT,
                          log=lambda text: None,
                          deliver_settings={"request_timeout_ms": 3000,
                                            "health_interval_ms": 1000},
                          extra_config=CONTROLLER_KEYS) as running:
        ses_control(running, SECONDARY, "identities",
                    {"identities": ["acme.example", "lumiere.example"]})
        running.start_controller()
        running.start_takeover()
        wait_for_status(running, REGION, "PRIMARY")
        yield running


def test_takeover_usage_errors(tstack):
    binary = os.path.join(ferrystack.BUILD, "ferry-deliver")
    result = subprocess.run([binary, "-c", tstack.config_path, "--takeover",
                             "--region", REGION], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 78
    assert ("a takeover worker sends in the secondary region 'us-west-2' "
            "(key 'controller.secondary_region'), not in 'us-east-1'"
            in result.stderr)
    result = subprocess.run([binary, "-c", tstack.config_path, "--takeover",
                             "--check-config"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr

    # The secondary region has no primary workers.
    result = subprocess.run([binary, "-c", tstack.config_path, "--region",
                             SECONDARY, "--check-config"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 78
    assert ("region 'us-west-2' is the secondary region (key "
            "'controller.secondary_region')" in result.stderr)

    # A secondary region missing from `regions` is named by its key.
    bad = os.path.join(tstack.state_dir, "bad-secondary.yaml")
    with open(tstack.config_path) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text.replace("  probe_interval_ms: 300\n",
                             "  probe_interval_ms: 300\n"
                             "  secondary_region: us-west-9\n"))
    result = subprocess.run([binary, "-c", bad, "--takeover",
                             "--check-config"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 78
    assert ("key 'controller.secondary_region': region 'us-west-9' is not "
            "listed under 'regions'" in result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1


def test_forced_failover_delivers_through_us_west(tstack):
    takeover_start = log_size(tstack, "takeover")
    client = Client(tstack)
    try:
        for i in range(10):
            client.send("acme", "before")
        before = list(client.sent["acme"])
        where = wait_all_delivered(tstack, before)
        assert {where[i][0] for i in before} == {REGION}

        result = failover(tstack, "force", "--region", REGION,
                          "--reason", "takeover drill")
        assert result.returncode == 0, result.stderr
        wait_for_status(tstack, REGION, "SECONDARY")
        wait_for_log(tstack, "takeover",
                     r"subscribed topic=mail\.us-east-1 "
                     r"group=ferry-takeover\.us-east-1", after=takeover_start)

        marks = {org: len(ids) for org, ids in client.sent.items()}
        for i in range(30):
            client.send("acme", "during")
        for org in ("globex", "lumiere", "bergmann"):
            for i in range(3):
                client.send(org, "during")
        during = {org: ids[marks[org]:] for org, ids in client.sent.items()}
        where = wait_all_delivered(
            tstack, [i for ids in during.values() for i in ids])

        # US West carries us-east-1's multi-region mail; nothing else
        # moves, and SES us-east-1 is healthy, so pinned mail goes there.
        assert {where[i][0] for i in during["acme"]} == {SECONDARY}
        assert {where[i][0] for i in during["globex"]} == {REGION}
        assert {where[i][0] for i in during["lumiere"] +
                during["bergmann"]} == {"eu-west-1"}

        result = failover(tstack, "failback", "--region", REGION)
        assert result.returncode == 0, result.stderr
        wait_for_status(tstack, REGION, "PRIMARY")
        wait_for_log(tstack, "takeover",
                     r"group-left topic=mail\.us-east-1 "
                     r"group=ferry-takeover\.us-east-1", after=takeover_start)
        marks = len(client.sent["acme"])
        for i in range(10):
            client.send("acme", "after")
        after = client.sent["acme"][marks:]
        where = wait_all_delivered(tstack, after)
        assert {where[i][0] for i in after} == {REGION}

        check_exactly_once(client, deliveries(tstack))
    finally:
        client.close()
        result = failover(tstack, "release", "--region", REGION)
        assert result.returncode == 0, result.stderr


class Sender(threading.Thread):
    """Sends at a steady rate, in turn for every organization, until
    `stopping` is set and at least `total` messages are accepted."""

    def __init__(self, stack, total, rate):
        super().__init__(daemon=True)
        self.client = Client(stack)
        self.total = total
        self.interval = 1.0 / rate
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        orgs = ["acme"] * 7 + ["globex", "lumiere", "bergmann"]
        try:
            while (not self.stopping.is_set() or
                   self.client.count < self.total):
                started = time.monotonic()
                org = orgs[self.client.count % len(orgs)]
                self.client.send(org, "outage")
                wait = self.interval - (time.monotonic() - started)
                if wait > 0 and not (self.stopping.is_set() and
                                     self.client.count < self.total):
                    time.sleep(wait)
        except Exception as exc:    # reported by the test
            self.error = exc
        finally:
            self.client.close()


def break_ses(stack, fault):
    """Make SES us-east-1 fail in one way; return how to heal it."""
    if fault == "refused":
        assert stack.stop_process("ses-" + REGION) == 0
        return lambda: stack.start_ses(REGION)
    if fault == "sending_paused":
        ses_control(stack, REGION, "sending", {"enabled": False})
        return lambda: ses_control(stack, REGION, "sending",
                                   {"enabled": True})
    spec = {"503": {"fault": "error", "status": 503},
            "timeout": {"fault": "hang"}}[fault]
    ses_control(stack, REGION, "faults", spec)
    return lambda: stack.ses_control(REGION, "faults", method="DELETE")


def test_outages_fail_over_and_back(tstack):
    faults = ["503", "timeout", "refused", "sending_paused"]
    states_before = len(control_states(tstack))
    sender = Sender(tstack, OUTAGE_MESSAGES,
                    rate=max(5.0, OUTAGE_MESSAGES / 150.0))
    west_before = len(summary.read_ledger(tstack.ses_dir(SECONDARY)))
    sender.start()
    try:
        for fault in faults:
            time.sleep(2)
            heal = break_ses(tstack, fault)
            wait_for_status(tstack, REGION, "SECONDARY", timeout=90)
            # Deliveries go on in US West while us-east-1 is down.
            west = len(summary.read_ledger(tstack.ses_dir(SECONDARY)))
            deadline = time.monotonic() + 60
            while (len(summary.read_ledger(tstack.ses_dir(SECONDARY))) <=
                   west and time.monotonic() < deadline):
                time.sleep(0.5)
            assert len(summary.read_ledger(
                tstack.ses_dir(SECONDARY))) > west, fault
            heal()
            wait_for_status(tstack, REGION, "PRIMARY", timeout=90)
    finally:
        sender.stopping.set()
        sender.join(timeout=600)
    assert sender.error is None, sender.error

    ids = [i for ids in sender.client.sent.values() for i in ids]
    assert len(ids) >= OUTAGE_MESSAGES
    where = wait_all_delivered(tstack, ids, timeout=180)
    check_exactly_once(sender.client, where)
    assert len(summary.read_ledger(tstack.ses_dir(SECONDARY))) > west_before

    states = [s["state"] for s in control_states(tstack)][states_before:]
    cycle = ["DRAINING_PRIMARY", "SECONDARY", "DRAINING_SECONDARY",
             "PRIMARY"]
    assert states == cycle * len(faults)


def test_us_west_not_ready_keeps_mail_home(tstack):
    """With acme.example unverified in us-west-2 the controller must not
    fail us-east-1 over, however broken its SES: mail waits in Kafka and
    is delivered at home, once, after the recovery."""
    controller_start = log_size(tstack, "controller")
    ses_control(tstack, SECONDARY, "identities",
                {"identities": ["lumiere.example"]})
    client = Client(tstack)
    try:
        wait_for_log(tstack, "controller", r"readiness region=us-east-1 "
                     r"secondary=us-west-2 ready=0", after=controller_start)
        heal = break_ses(tstack, "503")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            client.send("acme", "not-ready")
            time.sleep(0.2)
        wait_for_log(tstack, "controller", r"health region=us-east-1 "
                     r"probes=down workers=down health=down",
                     after=controller_start)
        time.sleep(3)
        assert tstack.failover_state(REGION) == "PRIMARY"
        where = deliveries(tstack)
        assert [i for i in client.sent["acme"] if i in where] == []
        heal()
        where = wait_all_delivered(tstack, client.sent["acme"])
        assert {where[i][0] for i in client.sent["acme"]} == {REGION}
        check_exactly_once(client, where)
    finally:
        client.close()
        ses_control(tstack, SECONDARY, "identities",
                    {"identities": ["acme.example", "lumiere.example"]})


def test_cut_off_controller_does_not_fail_over(tstack):
    """A controller whose own probes cannot reach SES us-east-1, while the
    workers deliver there without trouble, must leave the region where it
    is: the two sources disagree."""
    cut_off = os.path.join(tstack.state_dir, "cut-off.yaml")
    with open(tstack.config_path) as f:
        text = f.read()
    closed_port = tstack.base_port + 99      # nothing listens there
    text = text.replace("http://127.0.0.1:%d" % tstack.ses_ports[REGION],
                        "http://127.0.0.1:%d" % closed_port)
    with open(cut_off, "w") as f:
        f.write(text)
    assert tstack.stop_process("controller") == 0
    tstack.start_controller(cut_off, name="cut-off")
    client = Client(tstack)
    try:
        wait_for_log(tstack, "cut-off", r"probe region=us-east-1 "
                     r"outcome=retry status=0 reason=\"Couldn't connect")
        # Well past probe_failure_seconds and the health window.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            client.send("acme", "cut-off")
            time.sleep(0.2)
        assert tstack.failover_state(REGION) == "PRIMARY"
        where = wait_all_delivered(tstack, client.sent["acme"])
        assert {where[i][0] for i in client.sent["acme"]} == {REGION}
    finally:
        client.close()
        assert tstack.stop_process("cut-off") == 0
        tstack.start_controller()


def test_standby_controller_takes_over(tstack):
    """Two replicas: killing the active one with SIGKILL hands the lease
    to the other, which then carries out a failover and a failback."""
    tstack.start_controller(name="standby")
    time.sleep(5)
    standby_start = log_size(tstack, "standby")
    assert tstack.stop_process("controller", sig=signal.SIGKILL) == -9
    wait_for_log(tstack, "standby", r"lease-acquired", after=standby_start,
                 timeout=60)

    client = Client(tstack)
    try:
        result = failover(tstack, "force", "--region", REGION,
                          "--reason", "standby drill")
        assert result.returncode == 0, result.stderr
        wait_for_status(tstack, REGION, "SECONDARY")
        for i in range(10):
            client.send("acme", "standby")
        where = wait_all_delivered(tstack, client.sent["acme"])
        assert {where[i][0] for i in client.sent["acme"]} == {SECONDARY}
        result = failover(tstack, "failback", "--region", REGION)
        assert result.returncode == 0, result.stderr
        wait_for_status(tstack, REGION, "PRIMARY")
        check_exactly_once(client, deliveries(tstack))
    finally:
        client.close()
        failover(tstack, "release", "--region", REGION)


def test_sighup_checks_the_file_and_keeps_running(tstack):
    """ferry-deliver and ferry-controller apply their configuration at
    start only; SIGHUP must not end them, and it reports whether the file
    would load."""
    names = ["deliver-" + REGION, "takeover", "standby"]
    starts = {name: log_size(tstack, name) for name in names}
    with open(tstack.config_path) as f:
        good = f.read()
    for name in names:
        tstack.processes[name][0].send_signal(signal.SIGHUP)
    for name in names:
        wait_for_log(tstack, name, r"reload-not-applied file=\S+ferry.yaml",
                     after=starts[name])
        starts[name] = log_size(tstack, name)

    # A file that no longer loads is reported with its key.
    try:
        with open(tstack.config_path, "w") as f:
            f.write(good.replace("  retry_max_ms: 5000",
                                 "  retry_max_ms: soon"))
        for name in names:
            tstack.processes[name][0].send_signal(signal.SIGHUP)
        for name in names:
            wait_for_log(tstack, name, r"reload-failed file=\S+ferry.yaml "
                         r"reason=\".*key 'deliver.retry_max_ms'",
                         after=starts[name])
    finally:
        with open(tstack.config_path, "w") as f:
            f.write(good)

    # Every daemon is still running and delivering.
    assert tstack.crashed() == []
    client = Client(tstack)
    try:
        client.send("acme", "after-sighup")
        wait_all_delivered(tstack, client.sent["acme"])
    finally:
        client.close()
