"""SMTP AUTH against a running ferry-ingress, with swaks and smtplib.

The ingress offers STARTTLS with a self-signed certificate and reads
ingress.credentials_file, made with `ferry-ingress --hash-password`. The
organization initech has no network that contains 127.0.0.1, so its mail
is accepted only from a client that authenticated as one of its users.
The ingress logs at trace level, where every command and reply is
written, and the log must never contain a password.
"""

import base64
import os
import signal
import smtplib
import socket
import struct
import subprocess
import threading
import time

import pytest

import corpus
import ferrystack
import summary

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 400

USER = "carol"
PASSWORD = "tr0ub4dor&3-ferry"
WRONG_PASSWORD = "not-her-password-9"
# A user of acme, which may not send for initech.
ACME_USER = "dave"
ACME_PASSWORD = "dave-password-7"


def hash_password(password):
    result = subprocess.run(
        [os.path.join(ferrystack.BUILD, "ferry-ingress"), "--hash-password"],
        input=password + "\n", capture_output=True, text=True, check=True,
        timeout=30)
    return result.stdout.strip()


class AuthStack(ferrystack.Stack):
    """A stack whose ingress offers STARTTLS and AUTH, with the extra
    organization initech that has no networks of its own."""

    def write_config(self):
        super().write_config()
        with open(self.credentials_path, "w") as f:
            f.write("# user organization hash\n")
            f.write("%s initech %s\n" % (USER, hash_password(PASSWORD)))
            f.write("%s acme %s\n" % (ACME_USER,
                                      hash_password(ACME_PASSWORD)))
        with open(self.config_path) as f:
            lines = f.read().splitlines()
        lines[lines.index("log_level: info")] = "log_level: trace"
        at = lines.index("ingress:") + 1
        lines[at:at] = ["  tls_certificate: %s" % self.cert_path,
                        "  tls_key: %s" % self.key_path,
                        "  credentials_file: %s" % self.credentials_path,
                        "  max_errors: 3"]
        lines += ["  - name: initech",
                  "    home_region: us-east-1",
                  "    domains: [initech.example]",
                  "    networks: [192.0.2.0/24]",
                  "    multi_region: true",
                  "    integration: smtp"]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def cert_path(self):
        return os.path.join(self.state_dir, "cert.pem")

    @property
    def key_path(self):
        return os.path.join(self.state_dir, "key.pem")

    @property
    def credentials_path(self):
        return os.path.join(self.state_dir, "credentials")


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("auth-stack"))
    stack = AuthStack(state_dir, base_port=BASE_PORT, log=lambda text: None)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", stack.key_path, "-out", stack.cert_path, "-days", "2",
         "-subj", "/CN=auth.ferry.test"], check=True, capture_output=True)
    with stack as running:
        yield running
        assert running.crashed() == []


def swaks(stack, *options):
    return subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % stack.smtp_port, "--tls",
         "--helo", "swaks.ferry.test", "--to", "bob@example.org",
         "--data", "Subject: swaks auth\r\n\r\nsent by swaks\r\n"]
        + list(options), capture_output=True, text=True, timeout=60)


def delivered_trace(stack, envelope_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in summary.read_ledger(stack.ses_dir("us-east-1"))
                 if e["envelope_id"] == envelope_id]
        if found:
            path = os.path.join(stack.ses_dir("us-east-1"), "messages",
                                found[0]["message_id"] + ".eml")
            with open(path, "rb") as f:
                trace, _ = summary.split_trace_header(f.read())
            return trace.decode()
        time.sleep(0.5)
    raise AssertionError("message %s was not delivered" % envelope_id)


def queued_id(swaks_output):
    for line in swaks_output.splitlines():
        if line.startswith("<~  250 2.0.0 Ok: queued as "):
            return corpus.queued_id(line[4:])
    raise AssertionError("no queued reply in:\n" + swaks_output)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_auth_sends_for_organization(auth_stack, mechanism):
    result = swaks(auth_stack, "--from", "carol@initech.example",
                   "--auth", mechanism, "--auth-user", USER,
                   "--auth-password", PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0" in result.stdout, result.stdout
    trace = delivered_trace(auth_stack, queued_id(result.stdout))
    assert " with ESMTPSA (TLSv1.3:" in trace, trace


def test_swaks_auth_any_sender_address(auth_stack):
    # Any address of the organization's domains, not only the user's own.
    result = swaks(auth_stack, "--from", "billing@initech.example",
                   "--auth", "PLAIN", "--auth-user", USER,
                   "--auth-password", PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  250 2.1.0 Ok" in result.stdout, result.stdout


def test_swaks_without_auth_rejected(auth_stack):
    result = swaks(auth_stack, "--from", "carol@initech.example")
    assert result.returncode != 0, result.stdout
    assert ("<~* 550 5.7.1 client address 127.0.0.1 is not allowed to "
            "send mail for initech.example") in result.stdout, result.stdout


def test_swaks_wrong_password_rejected(auth_stack):
    result = swaks(auth_stack, "--from", "carol@initech.example",
                   "--auth", "PLAIN", "--auth-user", USER,
                   "--auth-password", WRONG_PASSWORD)
    assert result.returncode != 0, result.stdout
    assert "<~* 535 5.7.8" in result.stdout, result.stdout


def test_swaks_other_organization_rejected(auth_stack):
    result = swaks(auth_stack, "--from", "dave@initech.example",
                   "--auth", "LOGIN", "--auth-user", ACME_USER,
                   "--auth-password", ACME_PASSWORD)
    assert result.returncode != 0, result.stdout
    assert "<~  235 2.7.0" in result.stdout, result.stdout
    assert ("550 5.7.1 the authenticated user may not send mail for "
            "initech.example") in result.stdout, result.stdout


def test_auth_before_starttls_rejected(auth_stack):
    response = base64.b64encode(
        ("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
    with smtplib.SMTP("127.0.0.1", auth_stack.smtp_port, timeout=30) as c:
        c.ehlo("client.ferry.test")
        assert c.has_extn("starttls")
        assert not c.has_extn("auth")
        code, text = c.docmd("AUTH", "PLAIN " + response)
    assert code == 538, text
    assert text.startswith(b"5.7.11"), text


def test_failures_end_session(auth_stack):
    with smtplib.SMTP("127.0.0.1", auth_stack.smtp_port, timeout=30) as c:
        c.ehlo("client.ferry.test")
        c.starttls()
        c.ehlo("client.ferry.test")
        assert c.has_extn("auth")
        codes = []
        for _ in range(3):
            response = base64.b64encode(
                ("\0%s\0%s" % (USER, WRONG_PASSWORD)).encode()).decode()
            code, text = c.docmd("AUTH", "PLAIN " + response)
            codes.append(code)
        # The third failure reaches max_errors: 535, then 421 and close.
        assert codes == [535, 535, 535]
        code, text = c.getreply()
        assert code == 421, text


def test_sighup_reloads_credentials(auth_stack):
    with open(auth_stack.credentials_path) as f:
        original = f.read()
    with open(auth_stack.credentials_path, "a") as f:
        f.write("erin initech %s\n" % hash_password("erin-password-5"))
    pid = auth_stack.processes["ingress"][0].pid
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        result = swaks(auth_stack, "--from", "erin@initech.example",
                       "--auth", "PLAIN", "--auth-user", "erin",
                       "--auth-password", "erin-password-5")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stdout + result.stderr

    # An invalid file is not loaded: the users before it still work.
    with open(auth_stack.credentials_path, "w") as f:
        f.write("frank nowhere $6$s$h\n")
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        with open(auth_stack.log_path("ingress")) as f:
            if "credentials-reload-failed" in f.read():
                break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    result = swaks(auth_stack, "--from", "erin@initech.example",
                   "--auth", "PLAIN", "--auth-user", "erin",
                   "--auth-password", "erin-password-5")
    assert result.returncode == 0, result.stdout + result.stderr
    with open(auth_stack.credentials_path, "w") as f:
        f.write(original)


def tls_session(stack):
    """Return an smtplib session that has sent EHLO again after STARTTLS."""
    c = smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30)
    c.ehlo("client.ferry.test")
    c.starttls()
    c.ehlo("client.ferry.test")
    assert c.has_extn("auth")
    return c


def plain_response(user, password):
    return base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()


def test_noop_prompt_during_auth_checks(auth_stack):
    """While AUTH checks run, another session gets its NOOP reply at once.
    Each check computes a yescrypt hash, tens of milliseconds of CPU. On
    the event loop the checks would delay the NOOP until all were done."""
    sessions = 8
    response = plain_response(USER, PASSWORD)

    # The duration of one check, measured alone: the fastest of three.
    durations = []
    for _ in range(3):
        with tls_session(auth_stack) as c:
            start = time.monotonic()
            code, text = c.docmd("AUTH", "PLAIN " + response)
            durations.append(time.monotonic() - start)
            assert code == 235, text
    check = min(durations)

    idle = smtplib.SMTP("127.0.0.1", auth_stack.smtp_port, timeout=30)
    idle.ehlo("idle.ferry.test")
    clients = [tls_session(auth_stack) for _ in range(sessions)]
    replies = [None] * sessions
    first_reply = threading.Event()

    def authenticate(i):
        code, text = clients[i].docmd("AUTH", "PLAIN " + response)
        replies[i] = (code, time.monotonic())
        first_reply.set()

    threads = [threading.Thread(target=authenticate, args=(i,))
               for i in range(sessions)]
    for thread in threads:
        thread.start()

    # Once the first check is done, the others are still queued or running.
    assert first_reply.wait(30)
    noop_sent = time.monotonic()
    code, text = idle.noop()
    noop_answered = time.monotonic()
    assert code == 250, text
    for thread in threads:
        thread.join(30)
    for c in clients + [idle]:
        c.close()

    assert [r[0] for r in replies] == [235] * sessions
    last_auth = max(r[1] for r in replies)
    assert noop_answered < last_auth, (
        "NOOP answered %.3f s after the last AUTH reply"
        % (noop_answered - last_auth))
    # On the event loop the NOOP would wait for the checks queued before
    # it, most of the 8 checks; here it waits for none.
    combined = sessions * check
    assert noop_answered - noop_sent < combined / 4, (
        "NOOP took %.3f s; one check takes %.3f s"
        % (noop_answered - noop_sent, check))


def test_client_gone_during_auth_check(auth_stack):
    """Clients that reset the connection while their AUTH check runs
    leave the ingress serving: the result of the check is dropped."""
    response = plain_response(USER, PASSWORD)
    for _ in range(4):
        c = tls_session(auth_stack)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.send(("AUTH PLAIN %s\r\n" % response).encode())
        c.sock.close()
        c.close()

    deadline = time.monotonic() + 10
    while True:
        with open(auth_stack.log_path("ingress")) as f:
            closed_mid_check = [
                line for line in f
                if " disconnect " in line and "state=auth-check" in line]
        if closed_mid_check or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert closed_mid_check, "no session was closed during its AUTH check"

    with tls_session(auth_stack) as c:
        code, text = c.docmd("AUTH", "PLAIN " + response)
    assert code == 235, text


def test_log_never_contains_password(auth_stack):
    with open(auth_stack.log_path("ingress"), "rb") as f:
        log = f.read()
    assert b"mechanism=PLAIN" in log
    assert b"auth-failed" in log
    for secret in [PASSWORD, WRONG_PASSWORD, ACME_PASSWORD,
                   "erin-password-5"]:
        assert secret.encode() not in log
        for prefix in ["", "\0%s\0" % USER, "\0%s\0" % ACME_USER]:
            encoded = base64.b64encode((prefix + secret).encode())
            assert encoded not in log
