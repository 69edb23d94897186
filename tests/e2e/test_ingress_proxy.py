"""PROXY protocol v1 and v2 in front of a running ferry-ingress.

The ingress requires the header from 127.0.0.1, its only proxy network,
and takes the client address from it: the organization proxied accepts
mail only from 198.51.100.0/24 and 2001:db8::/32, which no test client
really has. A connection from 127.0.0.2, a header that is malformed or
too long, or plain SMTP without a header is closed before the greeting,
and the ingress keeps serving.
"""

import os
import smtplib
import socket
import struct
import time

import pytest

import corpus
import ferrystack
import summary

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 500

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1_header(source, family="TCP4", destination="127.0.0.1"):
    return ("PROXY %s %s %s 40000 2525\r\n"
            % (family, source, destination)).encode()


def v2_header(source=None, command=1, tlv=b""):
    """Return a version 2 header; a source with ':' is TCP over IPv6."""
    if source is None:
        return V2_SIGNATURE + bytes([0x20 | command, 0x00]) + \
            struct.pack("!H", len(tlv)) + tlv
    if ":" in source:
        family = 0x21
        addresses = socket.inet_pton(socket.AF_INET6, source) + \
            socket.inet_pton(socket.AF_INET6, "::1")
    else:
        family = 0x11
        addresses = socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
    body = addresses + struct.pack("!HH", 40000, 2525) + tlv
    return V2_SIGNATURE + bytes([0x20 | command, family]) + \
        struct.pack("!H", len(body)) + body


class ProxyStack(ferrystack.Stack):
    """A stack whose ingress requires a PROXY header from 127.0.0.1, with
    the organization proxied reachable only through it."""

    def write_config(self):
        super().write_config()
        with open(self.config_path) as f:
            lines = f.read().splitlines()
        at = lines.index("ingress:") + 1
        lines[at:at] = ["  proxy_protocol: true",
                        "  proxy_networks: [127.0.0.1/32]"]
        lines += ["  - name: proxied",
                  "    home_region: us-east-1",
                  "    domains: [proxied.example]",
                  "    networks: [198.51.100.0/24, \"2001:db8::/32\"]",
                  "    multi_region: true",
                  "    integration: smtp"]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def proxy_stack(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("proxy-stack"))
    with ProxyStack(state_dir, base_port=BASE_PORT,
                    log=lambda text: None) as running:
        yield running
        assert running.crashed() == []


class ProxySMTP(smtplib.SMTP):
    """smtplib on a connection that starts with a PROXY header, sent in
    pieces of `split` octets when split is set."""

    def __init__(self, header, port, split=None):
        self.header = header
        self.split = split
        super().__init__("127.0.0.1", port, timeout=30)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout)
        if self.split is None:
            sock.sendall(self.header)
        else:
            for i in range(0, len(self.header), self.split):
                sock.sendall(self.header[i:i + self.split])
                time.sleep(0.05)
        return sock


def send(port, header, sender, split=None):
    with ProxySMTP(header, port, split=split) as c:
        c.ehlo("client.ferry.test")
        code, text = c.mail(sender)
        if code != 250:
            return code, text.decode()
        c.rcpt("bob@example.org")
        code, text = c.data(b"Subject: proxied\r\n\r\nthrough a proxy\r\n")
    return code, text.decode()


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


def closed_before_greeting(port, data, source="127.0.0.1"):
    """Send data and return True when the server closes without sending
    anything."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                    source_address=(source, 0))
    try:
        if data:
            sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return received == b""
            received += chunk
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def test_v1_address_used_by_policy(proxy_stack):
    code, text = send(proxy_stack.smtp_port, v1_header("198.51.100.7"),
                      "alice@proxied.example")
    assert code == 250, text
    trace = delivered_trace(proxy_stack, corpus.queued_id(text))
    assert "from client.ferry.test ([198.51.100.7])" in trace, trace


def test_v1_address_rejected_for_other_org(proxy_stack):
    # acme admits 127.0.0.0/8, the proxy's address, not the client's.
    code, text = send(proxy_stack.smtp_port, v1_header("198.51.100.7"),
                      "alice@acme.example")
    assert code == 550, text
    assert "client address 198.51.100.7 is not allowed" in text, text


def test_v1_tcp6_address(proxy_stack):
    header = v1_header("2001:db8::7", family="TCP6", destination="::1")
    code, text = send(proxy_stack.smtp_port, header, "alice@proxied.example")
    assert code == 250, text


def test_v1_unknown_uses_connection_address(proxy_stack):
    code, text = send(proxy_stack.smtp_port, b"PROXY UNKNOWN\r\n",
                      "alice@acme.example")
    assert code == 250, text


def test_v2_tcp6_address_in_received(proxy_stack):
    code, text = send(proxy_stack.smtp_port,
                      v2_header("2001:db8::7", tlv=b"\x04\x00\x02ok"),
                      "alice@proxied.example")
    assert code == 250, text
    trace = delivered_trace(proxy_stack, corpus.queued_id(text))
    assert "[IPv6:2001:db8::7]" in trace, trace


def test_v2_tcp4_split_across_writes(proxy_stack):
    code, text = send(proxy_stack.smtp_port, v2_header("198.51.100.9"),
                      "alice@proxied.example", split=5)
    assert code == 250, text


def test_v2_local_uses_connection_address(proxy_stack):
    code, text = send(proxy_stack.smtp_port, v2_header(command=0),
                      "alice@acme.example")
    assert code == 250, text
    code, text = send(proxy_stack.smtp_port, v2_header(command=0),
                      "alice@proxied.example")
    assert code == 550, text


@pytest.mark.parametrize("data", [
    b"EHLO client.ferry.test\r\n",
    b"PROXY TCP4 198.51.100.7 127.0.0.1 99999 25\r\n",
    b"PROXY TCP4 " + b"1" * 200 + b"\r\n",
    V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\x00" * 64,
    V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\x01" * 12,
    b"PROXY TCP4 198.51.100.7",     # then the client closes its side
], ids=["plain-smtp", "bad-port", "overlong-v1", "oversized-v2", "v2-udp",
        "truncated"])
def test_bad_header_closed(proxy_stack, data):
    if data.endswith(b"198.51.100.7"):
        sock = socket.create_connection(("127.0.0.1", proxy_stack.smtp_port),
                                        timeout=30)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(4096) == b""
        sock.close()
    else:
        assert closed_before_greeting(proxy_stack.smtp_port, data)
    # The ingress is still serving.
    code, text = send(proxy_stack.smtp_port, v1_header("198.51.100.7"),
                      "alice@proxied.example")
    assert code == 250, text


def test_peer_outside_proxy_networks_closed(proxy_stack):
    assert closed_before_greeting(proxy_stack.smtp_port,
                                  v1_header("198.51.100.7"),
                                  source="127.0.0.2")
    with open(proxy_stack.log_path("ingress")) as f:
        log = f.read()
    assert "proxy-peer-not-allowed peer=127.0.0.2" in log
    assert "proxy-header-invalid" in log
