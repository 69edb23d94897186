"""The monitoring listeners of ferry-ingress, ferry-deliver and
ferry-controller on a running stack.

Every /metrics must pass `promtool check metrics`, and the values a user
watches must follow the mail: accepted messages, SES outcomes, the
failover state, and consumer lag computed from the brokers. Lag must keep
growing while a worker holds its partitions without committing (SES
sending paused in the region), and return to 0 once the mail is delivered.
"""

import os
import re
import smtplib
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import ferrystack

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 400
REGION = "us-east-1"
PAUSED_REGION = "eu-west-1"
PAUSED_GROUP = "ferry-deliver.%s.pinned" % PAUSED_REGION
WAIT_S = 120

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def fetch(port, path):
    """Return (status, body) of GET http://127.0.0.1:port/path."""
    url = "http://127.0.0.1:%d%s" % (port, path)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse(text):
    """Return {(name, ((label, value), ...)): value} of a text exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, "unparsable sample line: %r" % line
        labels = tuple(sorted(LABEL.findall(match.group(2) or "")))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def scrape(stack, daemon):
    status, body = fetch(stack.http_ports[daemon], "/metrics")
    assert status == 200, body
    return parse(body)


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """Sum the samples of name whose labels include the given ones."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items()
               if n == name and wanted <= set(ls))


def wait_until(condition, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.5)


def send(stack, sender, count, tag):
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as smtp:
        for i in range(count):
            smtp.sendmail(sender, ["rcpt%d@example.net" % i],
                          "Subject: %s %d\r\n\r\nbody %d\r\n" % (tag, i, i))


def ses_sending(stack, region, enabled):
    request = urllib.request.Request(
        "http://127.0.0.1:%d/_ferry/sending" % stack.ses_ports[region],
        data=('{"enabled": %s}' % str(enabled).lower()).encode(),
        method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def deliver_lag(stack):
    samples = scrape(stack, "controller")
    return sum(v for (n, ls), v in samples.items()
               if n == "ferry_consumer_group_lag_messages"
               and dict(ls)["group"].startswith("ferry-deliver."))


@pytest.fixture(scope="module")
def mstack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("metrics"))
    with ferrystack.Stack(state_dir, base_port=BASE_PORT, http=True,
                          log=lambda text: None) as running:
        running.start_controller()
        for daemon in running.http_ports:
            wait_until(lambda: fetch(running.http_ports[daemon],
                                     "/readyz")[0] == 200,
                       "%s to become ready" % daemon)
        yield running
        assert running.crashed() == []


def test_listeners_answer_health(mstack):
    for daemon, port in mstack.http_ports.items():
        status, body = fetch(port, "/healthz")
        assert status == 200, "%s /healthz: %s" % (daemon, body)
        status, body = fetch(port, "/readyz")
        assert status == 200, "%s /readyz: %s" % (daemon, body)
        status, _ = fetch(port, "/no-such-page")
        assert status == 404, daemon


def test_metrics_pass_promtool(mstack):
    send(mstack, "sender@acme.example", 2, "promtool")
    for daemon, port in mstack.http_ports.items():
        status, body = fetch(port, "/metrics")
        assert status == 200, daemon
        result = subprocess.run(["promtool", "check", "metrics"],
                                input=body.encode(), capture_output=True)
        assert result.returncode == 0, "%s: %s%s" % (
            daemon, result.stdout.decode(), result.stderr.decode())


def test_build_info_names_daemon(mstack):
    for daemon, port in mstack.http_ports.items():
        samples = scrape(mstack, daemon)
        kind = daemon.split("-")[0]
        assert total(samples, "ferry_build_info", daemon=kind) == 1, daemon
        assert value(samples, "process_start_time_seconds") > 1.7e9, daemon


def test_ingress_counts_accepted(mstack):
    before = scrape(mstack, "ingress")
    send(mstack, "sender@acme.example", 3, "accepted")
    after = scrape(mstack, "ingress")

    name = "ferry_ingress_messages_total"
    assert (value(after, name, result="accepted") -
            value(before, name, result="accepted")) == 3
    assert (value(after, name, result="rejected") ==
            value(before, name, result="rejected"))
    assert (value(after, "ferry_ingress_accept_duration_seconds_count") -
            value(before, "ferry_ingress_accept_duration_seconds_count")) == 3
    assert (value(after, "ferry_ingress_message_bytes_total") >
            value(before, "ferry_ingress_message_bytes_total"))
    assert (value(after, "ferry_ingress_sessions_total") -
            value(before, "ferry_ingress_sessions_total")) == 1
    assert value(after, "ferry_ingress_kafka_ready") == 1
    assert value(after, "ferry_ingress_durability_ok") == 1


def test_deliver_counts_delivered(mstack):
    daemon = "deliver-" + REGION
    name = "ferry_deliver_ses_requests_total"

    def delivered(count):
        v = value(scrape(mstack, daemon), name, region=REGION,
                  outcome="delivered")
        return v if v >= count else None

    # Every message so far was acme's, so us-east-1 delivers them all.
    sent = value(scrape(mstack, "ingress"), "ferry_ingress_messages_total",
                 result="accepted")
    before = wait_until(lambda: delivered(sent), "earlier messages")
    assert before == sent
    send(mstack, "sender@acme.example", 4, "delivered")
    after = wait_until(lambda: delivered(before + 4),
                       "4 more delivered outcomes")
    assert after == before + 4
    samples = scrape(mstack, daemon)
    assert value(samples, "ferry_deliver_region_stopped", region=REGION) == 0
    assert value(samples, "ferry_deliver_consuming",
                 topic="mail.%s.pinned" % REGION) == 1
    assert value(samples, "ferry_deliver_ses_request_duration_seconds_count",
                 region=REGION) >= after


def test_controller_reports_primary(mstack):
    def active():
        s = scrape(mstack, "controller")
        return s if value(s, "ferry_controller_active") == 1 else None

    samples = wait_until(active, "the controller to take the lease")
    assert value(samples, "ferry_failover_state", region=REGION,
                 state="PRIMARY") == 1
    assert value(samples, "ferry_failover_state", region=REGION,
                 state="SECONDARY") == 0
    assert value(samples, "ferry_failover_epoch", region=REGION) >= 1
    assert value(samples, "ferry_failover_state_since_seconds",
                 region=REGION) > 1.7e9


def test_lag_grows_while_sending_paused(mstack):
    ses_sending(mstack, PAUSED_REGION, False)
    try:
        send(mstack, "sender@bergmann.example", 5, "paused")

        # The worker stays in its group but commits nothing.
        def lagging():
            s = scrape(mstack, "controller")
            lag = total(s, "ferry_consumer_group_lag_messages",
                        group=PAUSED_GROUP)
            age = max([v for (n, ls), v in s.items()
                       if n == "ferry_consumer_group_lag_seconds"
                       and dict(ls)["group"] == PAUSED_GROUP] or [0])
            return s if lag >= 5 and age > 0 else None

        samples = wait_until(lagging, "lag of 5 in " + PAUSED_GROUP)
        assert value(samples, "ferry_consumer_group_members",
                     group=PAUSED_GROUP) == 1
        assert total(samples, "ferry_consumer_group_lag_messages",
                     group=PAUSED_GROUP) == 5
    finally:
        ses_sending(mstack, PAUSED_REGION, True)
    wait_until(lambda: deliver_lag(mstack) == 0 or None,
               "lag of the ferry-deliver groups to return to 0")


def test_status_page_shows_state_and_lag(mstack):
    wait_until(lambda: deliver_lag(mstack) == 0 or None,
               "lag of the ferry-deliver groups to be 0")
    url = "http://127.0.0.1:%d/" % mstack.http_ports["controller"]
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--dump-dom", url], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    dom = result.stdout.decode()

    row = re.search(r'<tr data-region="%s">(.*?)</tr>' % REGION, dom, re.S)
    assert row, dom[:2000]
    assert '<td class="state">PRIMARY</td>' in row.group(1)
    assert '<span id="role">active</span>' in dom

    lags = re.findall(r'<tr data-group="(ferry-deliver\.[^"]+)" '
                      r'data-partition="\d+">.*?<td class="lag">(\d+)</td>',
                      dom)
    groups = {group for group, _ in lags}
    assert "ferry-deliver.%s" % REGION in groups
    assert PAUSED_GROUP in groups
    assert all(lag == "0" for _, lag in lags), lags
