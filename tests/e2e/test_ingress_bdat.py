"""BDAT (RFC 3030 CHUNKING) through the whole stack.

A message sent in BDAT chunks of uneven sizes, split inside lines and
inside a CRLF, reaches SES byte for byte as sent apart from the Received
header, with no dot-stuffing removed. Commands are pipelined, as a
CHUNKING client may do.
"""

import os
import socket
import time

import corpus
import summary


def read_reply(sock_file):
    lines = []
    while True:
        line = sock_file.readline().decode()
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "".join(lines)


def make_message(lines):
    head = (b"From: alice@acme.example\r\nTo: bob@example.org\r\n"
            b"Subject: chunked\r\nMessage-ID: <bdat@acme.example>\r\n\r\n")
    body = b"".join(b"%s line %06d of a chunked message\r\n"
                    % (b"." if i % 7 == 0 else b"", i) for i in range(lines))
    return head + body


def delivered_message(stack, envelope_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in summary.read_ledger(stack.ses_dir("us-east-1"))
                 if e["envelope_id"] == envelope_id]
        if found:
            path = os.path.join(stack.ses_dir("us-east-1"), "messages",
                                found[0]["message_id"] + ".eml")
            with open(path, "rb") as f:
                return summary.split_trace_header(f.read())
        time.sleep(0.5)
    raise AssertionError("message %s was not delivered" % envelope_id)


def test_bdat_chunks_delivered_unchanged(stack):
    message = make_message(40000)
    # Uneven sizes, so chunks end inside lines, and one between CR and LF.
    between_cr_lf = message.index(b"\r\n", 700000) + 1
    bounds = [0, 1, 14, between_cr_lf, between_cr_lf + 500000, len(message)]
    chunks = [message[a:b] for a, b in zip(bounds, bounds[1:])]
    assert chunks[2].endswith(b"\r")
    assert chunks[3].startswith(b"\n")

    sock = socket.create_connection(("127.0.0.1", stack.smtp_port),
                                    timeout=60)
    replies = sock.makefile("rb")
    assert read_reply(replies).startswith("220 ")
    sock.sendall(b"EHLO client.ferry.test\r\n")
    assert "250-CHUNKING" in read_reply(replies)

    request = b"MAIL FROM:<alice@acme.example>\r\nRCPT TO:<bob@example.org>\r\n"
    for i, chunk in enumerate(chunks):
        last = b" LAST" if i == len(chunks) - 1 else b""
        request += b"BDAT %d%s\r\n" % (len(chunk), last) + chunk
    sock.sendall(request)

    assert read_reply(replies).startswith("250 2.1.0")
    assert read_reply(replies).startswith("250 2.1.5")
    for chunk in chunks[:-1]:
        reply = read_reply(replies)
        assert reply == "250 2.0.0 %d octets received\r\n" % len(chunk)
    final = read_reply(replies)
    assert final.startswith("250 2.0.0 Ok: queued as "), final
    sock.sendall(b"QUIT\r\n")
    assert read_reply(replies).startswith("221 ")
    sock.close()

    trace, delivered = delivered_message(stack, corpus.queued_id(final))
    assert b" with ESMTP id " in trace
    assert delivered == message
