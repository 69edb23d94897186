"""STARTTLS against a running ferry-ingress with a self-signed certificate.

Real clients (swaks, Python's smtplib, openssl s_client) upgrade the
session, and TLS 1.1 is rejected. Commands a client pipelined behind
STARTTLS are discarded. SIGHUP loads the certificate again. The delivered
message's Received header names ESMTPS with the protocol and cipher.
"""

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

import corpus
import ferrystack
import summary

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 200


class TlsStack(ferrystack.Stack):
    """A stack whose ingress offers STARTTLS with cert.pem and key.pem from
    its state directory."""

    def write_config(self):
        super().write_config()
        with open(self.config_path) as f:
            lines = f.read().splitlines()
        at = lines.index("ingress:") + 1
        lines[at:at] = ["  tls_certificate: %s" % self.cert_path,
                        "  tls_key: %s" % self.key_path]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def cert_path(self):
        return os.path.join(self.state_dir, "cert.pem")

    @property
    def key_path(self):
        return os.path.join(self.state_dir, "key.pem")


def make_certificate(cert_path, key_path, name):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key_path, "-out", cert_path, "-days", "2",
         "-subj", "/CN=%s" % name], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("tls-stack"))
    stack = TlsStack(state_dir, base_port=BASE_PORT, log=lambda text: None)
    make_certificate(stack.cert_path, stack.key_path, "first.ferry.test")
    with stack as running:
        yield running
        assert running.crashed() == []


def client_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def s_client(stack, *options):
    return subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % stack.smtp_port,
         "-starttls", "smtp", "-name", "client.ferry.test"] + list(options),
        input="QUIT\n", capture_output=True, text=True, timeout=30)


def wait_for_ledger(stack, envelope_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in summary.read_ledger(stack.ses_dir("us-east-1"))
                 if e["envelope_id"] == envelope_id]
        if found:
            return found
        time.sleep(0.5)
    return []


def delivered_trace(stack, envelope_id):
    found = wait_for_ledger(stack, envelope_id)
    assert len(found) == 1
    path = os.path.join(stack.ses_dir("us-east-1"), "messages",
                        found[0]["message_id"] + ".eml")
    with open(path, "rb") as f:
        trace, _ = summary.split_trace_header(f.read())
    return trace.decode()


def test_ehlo_offers_starttls(tls_stack):
    with smtplib.SMTP("127.0.0.1", tls_stack.smtp_port, timeout=30) as c:
        c.ehlo("client.ferry.test")
        assert c.has_extn("starttls")
        c.starttls(context=client_context())
        c.ehlo("client.ferry.test")
        assert not c.has_extn("starttls")


def test_smtplib_starttls_message(tls_stack):
    with smtplib.SMTP("127.0.0.1", tls_stack.smtp_port, timeout=30) as c:
        c.ehlo("client.ferry.test")
        c.starttls(context=client_context())
        c.ehlo("client.ferry.test")
        c.mail("alice@acme.example")
        c.rcpt("bob@example.org")
        code, text = c.data(b"Subject: over tls\r\n\r\nsecret\r\n")
    assert code == 250, text
    trace = delivered_trace(tls_stack, corpus.queued_id(text.decode()))
    assert " with ESMTPS (TLSv1.3:" in trace, trace


def test_swaks_tls_message(tls_stack):
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % tls_stack.smtp_port,
         "--tls", "--from", "swaks@acme.example", "--to", "bob@example.org",
         "--helo", "swaks.ferry.test",
         "--data", "Subject: swaks tls\r\n\r\nsent by swaks\r\n"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  250 2.0.0" in result.stdout, result.stdout


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_s_client_modern_tls(tls_stack, version):
    result = s_client(tls_stack, version)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = "TLSv1.2" if version == "-tls1_2" else "TLSv1.3"
    assert ("Protocol  : %s" % expected in result.stdout
            or "New, %s" % expected in result.stdout), result.stdout


def test_s_client_tls11_refused(tls_stack):
    # The client is allowed TLS 1.1 with legacy ciphers, so only the
    # server can be the one that refuses.
    result = s_client(tls_stack, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert result.returncode != 0, result.stdout
    assert "Cipher is (NONE)" in result.stdout or \
        "Cipher    : 0000" in result.stdout, result.stdout


def read_reply(sock_file):
    lines = []
    while True:
        line = sock_file.readline().decode()
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "".join(lines)


def test_pipelined_after_starttls_discarded(tls_stack):
    raw = socket.create_connection(("127.0.0.1", tls_stack.smtp_port),
                                   timeout=30)
    plain = raw.makefile("rb")
    assert read_reply(plain).startswith("220 ")
    raw.sendall(b"EHLO client.ferry.test\r\n")
    assert "STARTTLS" in read_reply(plain)

    # What a man in the middle would add behind the client's STARTTLS.
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<alice@acme.example>\r\n")
    assert read_reply(plain).startswith("220 2.0.0")
    tls = client_context().wrap_socket(raw, server_hostname="ingress")
    secure = tls.makefile("rb")
    tls.sendall(b"RCPT TO:<bob@example.org>\r\n")
    assert read_reply(secure).startswith("503 5.5.1 need MAIL before RCPT")
    tls.sendall(b"MAIL FROM:<alice@acme.example>\r\n")
    assert read_reply(secure).startswith("503 5.5.1 send EHLO or HELO")
    tls.sendall(b"QUIT\r\n")
    assert read_reply(secure).startswith("221 ")
    tls.close()
    with open(tls_stack.log_path("ingress")) as f:
        assert "starttls-input-discarded" in f.read()


def test_command_in_handshake_packet_answered(tls_stack):
    """A TLS 1.3 client may send its first command in the same packet as
    its Finished message. That command gets its reply and is not dropped."""
    raw = socket.create_connection(("127.0.0.1", tls_stack.smtp_port),
                                   timeout=10)
    plain = raw.makefile("rb")
    assert read_reply(plain).startswith("220 ")
    raw.sendall(b"EHLO client.ferry.test\r\n")
    read_reply(plain)
    raw.sendall(b"STARTTLS\r\n")
    assert read_reply(plain).startswith("220 2.0.0")

    # The handshake runs through memory buffers, so the Finished message
    # and the EHLO leave in one write.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context().wrap_bio(incoming, outgoing,
                                    server_hostname="ingress")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                raw.sendall(outgoing.read())
            incoming.write(raw.recv(65536))
    assert tls.version() == "TLSv1.3"
    tls.write(b"EHLO client.ferry.test\r\n")
    raw.sendall(outgoing.read())

    reply = b""
    while not any(line.startswith(b"250 ") for line in reply.splitlines()):
        data = raw.recv(65536)
        assert data, "connection closed before the EHLO reply"
        incoming.write(data)
        # One read returns at most one record's text.
        while True:
            try:
                reply += tls.read(65536)
            except ssl.SSLWantReadError:
                break
    assert reply.startswith(b"250-"), reply
    raw.close()


def peer_certificate(stack):
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as c:
        c.ehlo("client.ferry.test")
        c.starttls(context=client_context())
        return c.sock.getpeercert(binary_form=True)


def certificate_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def test_sighup_reloads_certificate(tls_stack):
    assert peer_certificate(tls_stack) == \
        certificate_der(tls_stack.cert_path)
    make_certificate(tls_stack.cert_path, tls_stack.key_path,
                     "second.ferry.test")
    pid = tls_stack.processes["ingress"][0].pid
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if peer_certificate(tls_stack) == \
                certificate_der(tls_stack.cert_path):
            break
        time.sleep(0.2)
    assert peer_certificate(tls_stack) == \
        certificate_der(tls_stack.cert_path)


def test_sighup_keeps_certificate_when_invalid(tls_stack):
    before = peer_certificate(tls_stack)
    with open(tls_stack.key_path, "w") as f:
        f.write("not a key\n")
    os.kill(tls_stack.processes["ingress"][0].pid, signal.SIGHUP)
    time.sleep(1)
    assert peer_certificate(tls_stack) == before
    with open(tls_stack.log_path("ingress")) as f:
        assert "tls-reload-failed" in f.read()
    assert ferrystack.wait_for_port(tls_stack.smtp_port, 5)
