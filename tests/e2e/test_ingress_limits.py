"""Timeouts and connection limits of a running ferry-ingress.

The ingress runs with short RFC 5321 timeouts (command 6 s, DATA
initiation 2 s, data block 4 s), at most 6 connections in total and 3 per
client address, and a durability check every second. Clients come from
several loopback addresses (127.0.0.1 to 127.0.0.3), which Linux routes
to the loopback interface. A client that sends one byte a second must not
delay the others, since an event loop serves many sessions.
"""

import os
import smtplib
import threading
import time

import pytest

import ferrystack
from rawsmtp import Client

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 300

COMMAND_TIMEOUT = 6
DATA_INITIATION_TIMEOUT = 2
DATA_BLOCK_TIMEOUT = 4
MAX_CONNECTIONS = 6
MAX_CONNECTIONS_PER_CLIENT = 3


class LimitsStack(ferrystack.Stack):
    """A stack whose ingress has short timeouts and low connection limits."""

    def write_config(self):
        super().write_config()
        with open(self.config_path) as f:
            lines = f.read().splitlines()
        at = lines.index("ingress:") + 1
        lines[at:at] = [
            "  command_timeout_seconds: %d" % COMMAND_TIMEOUT,
            "  data_initiation_timeout_seconds: %d"
            % DATA_INITIATION_TIMEOUT,
            "  data_block_timeout_seconds: %d" % DATA_BLOCK_TIMEOUT,
            "  max_connections: %d" % MAX_CONNECTIONS,
            "  max_connections_per_client: %d" % MAX_CONNECTIONS_PER_CLIENT,
            "  durability_check_interval_seconds: 1",
        ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def limits_stack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("limits-stack"))
    with LimitsStack(state_dir, base_port=BASE_PORT,
                     log=lambda text: None) as running:
        yield running
        assert running.crashed() == []


def open_transaction(stack):
    client = Client(stack)
    assert client.reply().startswith("220 ")
    assert client.command("EHLO client.ferry.test").startswith("250")
    assert client.command("MAIL FROM:<alice@acme.example>").startswith("250")
    assert client.command("RCPT TO:<bob@example.org>").startswith("250")
    assert client.command("DATA").startswith("354")
    return client


def timed_reply(client):
    start = time.monotonic()
    reply = client.reply()
    return reply, time.monotonic() - start


def test_command_timeout(limits_stack):
    client = Client(limits_stack)
    assert client.reply().startswith("220 ")
    reply, elapsed = timed_reply(client)
    assert reply.startswith("421 4.4.2 "), reply
    assert COMMAND_TIMEOUT - 0.5 <= elapsed < COMMAND_TIMEOUT + 2, elapsed
    assert client.closed()
    client.close()


def test_data_initiation_timeout(limits_stack):
    client = open_transaction(limits_stack)
    reply, elapsed = timed_reply(client)
    assert reply.startswith("421 4.4.2 "), reply
    assert DATA_INITIATION_TIMEOUT - 0.5 <= elapsed < \
        DATA_INITIATION_TIMEOUT + 1.5, elapsed
    assert client.closed()
    client.close()


def test_data_block_timeout(limits_stack):
    client = open_transaction(limits_stack)
    client.send("Subject: stalled\r\n\r\nfirst half")
    reply, elapsed = timed_reply(client)
    assert reply.startswith("421 4.4.2 "), reply
    assert DATA_BLOCK_TIMEOUT - 0.5 <= elapsed < DATA_BLOCK_TIMEOUT + 1.5, \
        elapsed
    assert client.closed()
    client.close()


def send_message(port, tag):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.ferry.test")
        c.mail("alice@acme.example")
        c.rcpt("bob@example.org")
        code, _ = c.data(("Subject: %s\r\n\r\nfast\r\n" % tag).encode())
        return code


def test_slow_client_does_not_stall_others(limits_stack):
    """One byte a second for 10 s, with a 4 s data block timeout: the slow
    client is served, and 10 other messages finish within a few seconds."""
    outcome = {}

    def slow():
        client = open_transaction(limits_stack)
        for byte in b"Subject: slow\r\n\r\n":
            client.send(bytes([byte]))
            time.sleep(0.5)
        for byte in b"tortoise\r\n":
            client.send(bytes([byte]))
            time.sleep(1)
        client.send(b".\r\n")
        outcome["reply"] = client.reply()
        client.command("QUIT")
        client.close()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(2)
    start = time.monotonic()
    codes = [send_message(limits_stack.smtp_port, "fast-%d" % i)
             for i in range(10)]
    elapsed = time.monotonic() - start
    thread.join(timeout=60)
    assert codes == [250] * 10
    assert elapsed < 5, elapsed
    assert outcome["reply"].startswith("250 2.0.0 Ok: queued as "), outcome


def test_connections_per_client(limits_stack):
    open_clients = [Client(limits_stack) for _ in range(MAX_CONNECTIONS_PER_CLIENT)]
    for client in open_clients:
        assert client.reply().startswith("220 ")

    extra = Client(limits_stack)
    reply = extra.reply()
    assert reply.startswith("421 4.7.0 "), reply
    assert "too many connections from 127.0.0.1" in reply, reply
    assert extra.closed()
    extra.close()

    # Another address still gets in, and so does 127.0.0.1 once one of
    # its connections is closed.
    other = Client(limits_stack, source="127.0.0.2")
    assert other.reply().startswith("220 ")
    assert open_clients[0].command("QUIT").startswith("221 ")
    open_clients[0].close()
    time.sleep(0.2)
    again = Client(limits_stack)
    assert again.reply().startswith("220 ")
    for client in open_clients[1:] + [other, again]:
        client.close()


def test_connections_in_total(limits_stack):
    open_clients = []
    for source in ["127.0.0.1", "127.0.0.2"]:
        for _ in range(MAX_CONNECTIONS // 2):
            client = Client(limits_stack, source=source)
            assert client.reply().startswith("220 ")
            open_clients.append(client)

    extra = Client(limits_stack, source="127.0.0.3")
    reply = extra.reply()
    assert reply.startswith("421 4.7.0 "), reply
    assert "too many connections, try again later" in reply, reply
    assert extra.closed()
    extra.close()

    assert open_clients[0].command("QUIT").startswith("221 ")
    open_clients[0].close()
    time.sleep(0.2)
    late = Client(limits_stack, source="127.0.0.3")
    assert late.reply().startswith("220 ")
    for client in open_clients[1:] + [late]:
        client.close()


def test_periodic_durability_check_relaxed(limits_stack):
    """A single test broker fails the check. In relaxed mode the periodic
    run logs a warning once and sessions are still served."""
    deadline = time.monotonic() + 10
    log = ""
    while time.monotonic() < deadline:
        with open(limits_stack.log_path("ingress")) as f:
            log = f.read()
        if "durability-weak check=periodic" in log:
            break
        time.sleep(0.5)
    assert "durability-weak check=periodic" in log, log[-2000:]
    time.sleep(2)
    with open(limits_stack.log_path("ingress")) as f:
        assert f.read().count("durability-weak check=periodic") == 1
    assert send_message(limits_stack.smtp_port, "relaxed") == 250
