"""Failover driven by operators with ferryctl, against a real controller.

`ferryctl failover force` writes a command record to ferry.control; the
controller must drain us-east-1 to us-west-2 and publish SECONDARY, which
`ferryctl failover status` must then show with the hold flag set. The
primary worker must leave group ferry-deliver.us-east-1 by itself and
send nothing from mail.us-east-1 until `failback` brings the region back
to PRIMARY; then it delivers what waited, each message once. `release`
clears hold.
"""

import os
import re
import smtplib
import subprocess
import time

import pytest

import corpus
import ferrystack
import summary
from test_controller import (CONTROLLER_KEYS, REGION, SECONDARY,
                             control_states, log_size, ses_control,
                             wait_for_log)

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 300
FERRYCTL = os.path.join(ferrystack.BUILD, "ferryctl")


def failover(stack, *args):
    return subprocess.run([FERRYCTL, "failover"] + list(args) +
                          ["-c", stack.config_path],
                          capture_output=True, text=True, timeout=60)


def status_rows(stack):
    """Return {region: {column: value}} from `ferryctl failover status`."""
    result = failover(stack, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=len(header) - 1)
        if len(cells) >= len(header) - 1:
            rows[cells[0]] = dict(zip(header, cells))
    return rows


def send(stack, sender, tag, count):
    """Send count messages from sender; return their envelope ids."""
    ids = []
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        smtp.ehlo("test.ferry.test")
        for i in range(count):
            assert smtp.mail(sender)[0] == 250
            assert smtp.rcpt("rcpt%d@example.net" % i)[0] == 250
            code, reply = smtp.data("Subject: %s %d\r\n\r\nbody\r\n"
                                    % (tag, i))
            assert code == 250, reply
            ids.append(corpus.queued_id(reply.decode()))
    return ids


def ledger_counts(stack, region):
    counts = {}
    for entry in summary.read_ledger(stack.ses_dir(region)):
        counts[entry["envelope_id"]] = counts.get(entry["envelope_id"],
                                                  0) + 1
    return counts


def wait_delivered(stack, region, ids, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = ledger_counts(stack, region)
        if all(i in counts for i in ids):
            return counts
        time.sleep(0.5)
    pytest.fail("not all of %r in the ledger of %s" % (ids, region))


def wait_for_status(stack, region, state, timeout=60):
    deadline = time.monotonic() + timeout
    rows = {}
    while time.monotonic() < deadline:
        rows = status_rows(stack)
        if rows.get(region, {}).get("STATE") == state:
            return rows[region]
        time.sleep(0.5)
    pytest.fail("status never showed %s %s; last rows: %r"
                % (region, state, rows))


@pytest.fixture(scope="module")
def fstack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("failover"))
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


def test_status_without_records(fstack):
    result = failover(fstack, "status")
    assert result.returncode == 0, result.stderr
    assert "no state records in ferry.control" in result.stdout


def test_command_without_region_is_usage_error(fstack):
    result = failover(fstack, "force")
    assert result.returncode == 64
    assert "force needs --region R" in result.stderr


def test_force_failback_and_release(fstack):
    start = log_size(fstack, "controller") \
        if os.path.exists(fstack.log_path("controller")) else 0
    worker = "deliver-" + REGION
    fstack.start_controller(fstack.controller_config)
    try:
        row = wait_for_status(fstack, REGION, "PRIMARY")
        assert row["EPOCH"] == "1"
        assert row["HOLD"] == "no"
        before = send(fstack, "a@acme.example", "before", 3)
        wait_delivered(fstack, REGION, before)

        result = failover(fstack, "force", "--region", REGION,
                          "--reason", "e2e drill")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(
            "wrote force-failover for %s at ferry.control offset " % REGION)
        wait_for_log(fstack, "controller", r"command region=us-east-1 "
                     r"command=force-failover .* by=ferryctl:", after=start)

        # The worker leaves its group by itself, so the drain completes.
        row = wait_for_status(fstack, REGION, "SECONDARY")
        assert row["HOLD"] == "yes"
        assert row["EPOCH"] == "3"
        assert "ferry-takeover.us-east-1" in row["REASON"]
        wait_for_log(fstack, worker, r"group-left topic=mail\.us-east-1 ")

        # mail.us-east-1 waits; the pinned topic of eu-west-1 does not.
        worker_start = log_size(fstack, worker)
        during = send(fstack, "a@acme.example", "during", 3)
        pinned = send(fstack, "b@bergmann.example", "pinned", 1)
        wait_delivered(fstack, "eu-west-1", pinned)
        time.sleep(3)
        counts = ledger_counts(fstack, REGION)
        assert [i for i in during if i in counts] == []

        result = failover(fstack, "failback", "--region", REGION)
        assert result.returncode == 0, result.stderr
        row = wait_for_status(fstack, REGION, "PRIMARY")
        assert row["HOLD"] == "yes"
        assert row["EPOCH"] == "5"
        wait_for_log(fstack, worker, r"subscribed topic=mail\.us-east-1 ",
                     after=worker_start)
        counts = wait_delivered(fstack, REGION, during)
        for envelope_id in before + during:
            assert counts[envelope_id] == 1, envelope_id

        result = failover(fstack, "release", "--region", REGION)
        assert result.returncode == 0, result.stderr
        wait_for_log(fstack, "controller", r"published region=us-east-1 "
                     r"from=PRIMARY to=PRIMARY epoch=6 hold=0", after=start)
        row = status_rows(fstack)[REGION]
        assert row["STATE"] == "PRIMARY"
        assert row["HOLD"] == "no"
        assert row["REASON"] == "operator: release"

        states = [s["state"] for s in control_states(fstack)]
        assert states == ["PRIMARY", "DRAINING_PRIMARY", "SECONDARY",
                          "DRAINING_SECONDARY", "PRIMARY", "PRIMARY"]
    finally:
        assert fstack.stop_process("controller") == 0


def test_status_of_one_region(fstack):
    rows = status_rows(fstack)
    assert REGION in rows
    result = failover(fstack, "status", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["eu-west-1"]


def test_region_not_primary_is_usage_error(fstack):
    """A command for a region the controller does not fail over would be
    written and then ignored; ferryctl refuses it instead."""
    for region in ("nowhere", SECONDARY, "us-east1"):
        result = failover(fstack, "force", "--region", region)
        assert result.returncode == 64, result.stderr
        assert ("region '%s' is not a primary region of %s; primary "
                "regions: us-east-1 eu-west-1" % (region, fstack.config_path)
                in result.stderr)
        assert result.stdout == ""
