"""ferry-ingress with several event loops (ingress.threads: 4).

The listening loop hands connections to the loops in turn, so four
consecutive connections land on four different threads, which the
"connect" log line names. The connection limits count every loop's
connections. SIGTERM drains every loop: idle sessions get 421 at once,
and a session waiting for Kafka gets its real reply within the grace
period, then the process exits with 0.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import ferrystack
from rawsmtp import Client

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 500

THREADS = 4
MAX_CONNECTIONS = 2500
MAX_CONNECTIONS_PER_CLIENT = 3

# Sessions held open at once by the test of many sessions.
MANY_SESSIONS = 2000

# The ingress's grace period after SIGTERM for sessions waiting for Kafka.
GRACE_S = 10


class ThreadsStack(ferrystack.Stack):
    """A stack whose ingress runs THREADS event loops and offers STARTTLS
    with a self-signed certificate, so that SIGHUP reloads something."""

    def write_config(self):
        super().write_config()
        cert = os.path.join(self.state_dir, "cert.pem")
        key = os.path.join(self.state_dir, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2",
             "-subj", "/CN=threads.ferry.test"],
            check=True, capture_output=True)
        with open(self.config_path) as f:
            lines = f.read().splitlines()
        at = lines.index("ingress:") + 1
        lines[at:at] = [
            "  threads: %d" % THREADS,
            "  max_connections: %d" % MAX_CONNECTIONS,
            "  max_connections_per_client: %d" % MAX_CONNECTIONS_PER_CLIENT,
            "  tls_certificate: %s" % cert,
            "  tls_key: %s" % key,
        ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def threads_stack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("threads-stack"))
    with ThreadsStack(state_dir, base_port=BASE_PORT,
                      log=lambda text: None) as running:
        yield running
        assert running.crashed() == []


@pytest.fixture
def drain_stack(tmp_path):
    """A stack of the test's own, since the test stops its ingress."""
    with ThreadsStack(str(tmp_path), base_port=BASE_PORT + 30,
                      log=lambda text: None) as running:
        yield running


def connect_threads(stack):
    """The thread of every "connect" line of the ingress log, in order."""
    with open(stack.log_path("ingress")) as f:
        return [int(m.group(1)) for m in
                re.finditer(r" connect session=\S+ client=\S+ thread=(\d+)",
                            f.read())]


def test_connections_go_to_every_thread_in_turn(threads_stack):
    before = len(connect_threads(threads_stack))
    clients = []
    for i in range(2 * THREADS):
        # Under the limit per client address.
        client = Client(threads_stack, source="127.0.0.%d" % (10 + i))
        assert client.reply().startswith("220 ")
        clients.append(client)
    threads = connect_threads(threads_stack)[before:]
    assert len(threads) == 2 * THREADS, threads
    assert sorted(threads[:THREADS]) == list(range(THREADS)), threads
    assert threads[THREADS:] == threads[:THREADS], threads

    # Every thread's session takes a message through Kafka.
    for i, client in enumerate(clients):
        assert client.command("EHLO client.ferry.test").startswith("250")
        assert client.command("MAIL FROM:<alice@acme.example>") \
            .startswith("250")
        assert client.command("RCPT TO:<bob@example.org>").startswith("250")
        assert client.command("DATA").startswith("354")
        reply = client.command("Subject: thread %d\r\n\r\nbody\r\n." % i)
        assert reply.startswith("250 2.0.0 Ok: queued as "), reply
        client.close()


def test_limit_per_client_counts_every_thread(threads_stack):
    before = len(connect_threads(threads_stack))
    open_clients = [Client(threads_stack) for _ in range(MAX_CONNECTIONS_PER_CLIENT)]
    for client in open_clients:
        assert client.reply().startswith("220 ")
    threads = connect_threads(threads_stack)[before:]
    assert len(set(threads)) == MAX_CONNECTIONS_PER_CLIENT, threads

    extra = Client(threads_stack)
    reply = extra.reply()
    assert reply.startswith("421 4.7.0 "), reply
    assert "too many connections from 127.0.0.1" in reply, reply
    extra.close()

    # The next one lands on the thread none of the open ones is on.
    assert len(set(connect_threads(threads_stack)[before:])) == THREADS
    other = Client(threads_stack, source="127.0.0.2")
    assert other.reply().startswith("220 ")
    for client in open_clients + [other]:
        client.close()


def test_thousands_of_sessions(threads_stack):
    """MANY_SESSIONS sessions open at once, from 3 per address under the
    limit per client, each greeted and each replying to a command."""
    sources = ["127.0.%d.%d" % (1 + i // 250, 1 + i % 250)
               for i in range(MANY_SESSIONS // MAX_CONNECTIONS_PER_CLIENT + 1)]
    clients = []
    try:
        for i in range(MANY_SESSIONS):
            client = Client(threads_stack,
                            source=sources[i // MAX_CONNECTIONS_PER_CLIENT])
            clients.append(client)
        for client in clients:
            assert client.reply().startswith("220 ")
        for client in clients:
            client.send(b"NOOP\r\n")
        for client in clients:
            assert client.reply().startswith("250 ")
    finally:
        for client in clients:
            client.close()
    assert threads_stack.processes["ingress"][0].poll() is None


def test_sigterm_drains_every_thread(drain_stack):
    """Idle sessions on every thread get 421 at once. A session whose
    message waits for a stopped broker gets 250 once the broker resumes,
    within the grace period. A client that stalls in its TLS handshake is
    cut at once instead of holding the exit to the end of the grace
    period. Then the ingress exits with 0."""
    stalled = Client(drain_stack, source="127.0.0.30")
    assert stalled.reply().startswith("220 ")
    assert stalled.command("EHLO client.ferry.test").startswith("250")
    assert stalled.command("STARTTLS").startswith("220 ")
    waiting = Client(drain_stack)
    assert waiting.reply().startswith("220 ")
    idle = []
    for i in range(THREADS - 1):
        client = Client(drain_stack, source="127.0.0.%d" % (10 + i))
        assert client.reply().startswith("220 ")
        assert client.command("EHLO client.ferry.test").startswith("250")
        idle.append(client)
    assert len(set(connect_threads(drain_stack)[-THREADS:])) == THREADS

    assert waiting.command("EHLO client.ferry.test").startswith("250")
    assert waiting.command("MAIL FROM:<alice@acme.example>") \
        .startswith("250")
    assert waiting.command("RCPT TO:<bob@example.org>").startswith("250")
    assert waiting.command("DATA").startswith("354")

    # The broker is stopped, so the message waits for its acknowledgement.
    kafka = drain_stack.kafka_pid()
    os.kill(kafka, signal.SIGSTOP)
    try:
        waiting.send(b"Subject: drain\r\n\r\nbody\r\n.\r\n")
        time.sleep(0.5)
        ingress = drain_stack.processes["ingress"][0]
        ingress.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        for client in idle:
            reply = client.reply()
            assert reply.startswith("421 4.3.2 "), reply
            assert client.closed()
            client.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", drain_stack.smtp_port),
                                     timeout=5).close()
        assert ingress.poll() is None
    finally:
        os.kill(kafka, signal.SIGCONT)

    reply = waiting.reply()
    assert reply.startswith("250 2.0.0 Ok: queued as "), reply
    reply = waiting.reply()
    assert reply.startswith("421 4.3.2 "), reply
    waiting.close()
    assert stalled.closed()
    stalled.close()
    ingress.wait(timeout=30)
    assert time.monotonic() - signalled < GRACE_S
    assert drain_stack.stop_process("ingress", timeout=30) == 0
    with open(drain_stack.log_path("ingress")) as f:
        log = f.read()
    assert " drained late_acks=0" in log, log[-2000:]
    assert " stopped unflushed=0 " in log, log[-2000:]


def test_sighup_while_every_thread_serves(threads_stack):
    """SIGHUP stops the other loops for the reload; sessions on every
    thread keep working through repeated reloads."""
    ingress = threads_stack.processes["ingress"][0]
    stop = threading.Event()
    errors = []

    def hup():
        while not stop.is_set():
            ingress.send_signal(signal.SIGHUP)
            time.sleep(0.05)

    def session(n):
        try:
            for i in range(5):
                client = Client(threads_stack,
                                source="127.0.0.%d" % (20 + n))
                assert client.reply().startswith("220 ")
                assert client.command("EHLO c.ferry.test").startswith("250")
                assert client.command("NOOP").startswith("250")
                assert client.command("QUIT").startswith("221")
                client.close()
        except Exception as e:  # reported below
            errors.append("%d: %r" % (n, e))

    hupper = threading.Thread(target=hup)
    hupper.start()
    workers = [threading.Thread(target=session, args=(n,))
               for n in range(2 * THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    stop.set()
    hupper.join()
    assert errors == []
    assert ingress.poll() is None
    with open(threads_stack.log_path("ingress")) as f:
        log = f.read()
    assert " tls-reloaded signal=SIGHUP" in log, log[-2000:]
    assert " tls-reload-failed " not in log


def test_signal_during_teardown(drain_stack):
    """A SIGHUP or a second SIGTERM that arrives after the loops stopped,
    while the ingress frees its producer, leaves the exit status 0
    instead of killing the process."""
    ingress = drain_stack.processes["ingress"][0]
    log_path = drain_stack.log_path("ingress")
    ingress.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(log_path) as f:
            if " stopped unflushed=" in f.read():
                break
        time.sleep(0.005)
    ingress.send_signal(signal.SIGHUP)
    ingress.send_signal(signal.SIGTERM)
    assert ingress.wait(timeout=10) == 0
