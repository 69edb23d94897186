"""ses-local's fast HTTP request parsing against http.server and http.client.

scripts/seslocal/httpheaders.py splits plain header blocks itself and
SesRequestHandler.parse_request handles plain HTTP/1.1 request lines
itself. These tests check that both give what the standard library gives,
on a table of requests and on the header blocks of the SpamAssassin corpus
(real mail headers have folded lines, non-ASCII bytes and odd lines).
"""

import io
import os
import sys
from http.client import parse_headers
from http.server import BaseHTTPRequestHandler

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import corpus  # noqa: E402
from seslocal.httpheaders import (  # noqa: E402
    PLAIN_HEADER_LINE,
    parse_header_lines,
    read_header_lines,
)
from seslocal.server import SesRequestHandler  # noqa: E402

SIGNED_HEADERS = (
    b"Host: 127.0.0.1:4581\r\n"
    b"Content-Type: application/json\r\n"
    b"X-Amz-Date: 20260101T000000Z\r\n"
    b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDFERRYLOCAL/20260101/us-east-1/ses/aws4_request, "
    b"SignedHeaders=content-type;host;x-amz-date, Signature=00ff\r\n"
    b"Content-Length: 2\r\n"
)

HEADER_BLOCKS = {
    "plain": SIGNED_HEADERS + b"\r\n",
    "empty": b"\r\n",
    "lf_line_ends": b"Host: a\nContent-Length: 0\n\n",
    "no_blank_after_colon": b"Host:a\r\nX-Empty:\r\n\r\n",
    "blanks_around_value": b"X-Spaces:   a b  \r\nX-Tab:\tvalue\t\r\n\r\n",
    "repeated_name": b"X-Amz-Meta: 1\r\nx-amz-meta: 2\r\n\r\n",
    "folded_line": b"X-Folded: first\r\n  second\r\nHost: a\r\n\r\n",
    "first_line_folded": b" folded\r\nHost: a\r\n\r\n",
    "latin1_value": b"X-Name: caf\xe9\r\n\r\n",
    "next_line_byte": b"X-Next: a\x85b\r\n\r\n",
    "bare_cr": b"X-CR: a\rb\r\nHost: a\r\n\r\n",
    "form_feed": b"X-FF: a\x0cb\r\n\r\n",
    "line_without_colon": b"Host: a\r\nnot a header\r\nX-After: b\r\n\r\n",
    "colon_first": b": no name\r\nHost: a\r\n\r\n",
    "unix_from_line": b"From someone\r\nHost: a\r\n\r\n",
    "space_in_name": b"Bad Name: a\r\nHost: a\r\n\r\n",
    "end_of_input": b"Host: a\r\nX-Last: b\r\n",
    "cut_line": b"Host: a\r\nX-Cut: b",
    "colon_in_value": b"Host: 127.0.0.1:4581\r\nX-Url: http://a/b?c=d\r\n\r\n",
}


def standard_headers(block: bytes) -> list:
    return parse_headers(io.BytesIO(block)).items()


def fast_headers(block: bytes) -> list:
    return parse_header_lines(read_header_lines(io.BytesIO(block))).items()


@pytest.mark.parametrize("name", sorted(HEADER_BLOCKS))
def test_header_block_matches_http_client(name):
    block = HEADER_BLOCKS[name]
    assert fast_headers(block) == standard_headers(block)


def test_plain_header_lines_take_fast_path():
    lines = read_header_lines(io.BytesIO(HEADER_BLOCKS["plain"]))
    assert all(PLAIN_HEADER_LINE.fullmatch(line) for line in lines[:-1])


def corpus_header_blocks():
    """Header blocks of the corpus messages, each ended by its blank line, within http.client's limits."""
    for message in corpus.load(10000):
        head, separator, _ = message.data.partition(b"\r\n\r\n")
        lines = (head + b"\r\n").splitlines(keepends=True)
        if not separator or len(lines) >= 100 or any(len(line) > 65536 for line in lines):
            continue
        yield message.name, head + b"\r\n\r\n"


def test_corpus_header_blocks_match_http_client():
    if not os.path.isdir(corpus.CORPUS_DIR):
        pytest.skip("corpus not found; run scripts/install-deps")
    compared = 0
    fast = 0
    mismatched = []
    for name, block in corpus_header_blocks():
        compared += 1
        lines = read_header_lines(io.BytesIO(block))
        if all(PLAIN_HEADER_LINE.fullmatch(line) for line in lines[:-1]):
            fast += 1
        if fast_headers(block) != standard_headers(block):
            mismatched.append(name)
        # Most mail has folded lines, so the fast path is also checked on the plain lines alone.
        plain = b"".join(line for line in lines[:-1] if PLAIN_HEADER_LINE.fullmatch(line)) + b"\r\n"
        if fast_headers(plain) != standard_headers(plain):
            mismatched.append(name + " (plain lines)")
    assert mismatched == []
    assert compared > 1000
    # Both paths must be taken for the comparison to mean anything.
    assert fast > 50
    assert compared - fast > 1000


class FakeServer:
    date_header = (None, "")


def parse_with(handler_class, request: bytes):
    """Run handler_class.parse_request on request and return what it set and sent."""
    handler = handler_class.__new__(handler_class)
    handler.server = FakeServer()
    handler.client_address = ("127.0.0.1", 1)
    handler.rfile = io.BytesIO(request)
    handler.wfile = io.BytesIO()
    handler.raw_requestline = handler.rfile.readline(65537)
    handler.log_message = lambda *args: None
    # Date headers differ between the runs, so both use one value.
    handler.date_time_string = lambda timestamp=None: "Thu, 01 Jan 2026 00:00:00 GMT"
    parsed = handler.parse_request()
    headers = handler.headers.items() if hasattr(handler, "headers") else None
    return {
        "parsed": parsed,
        "command": handler.command,
        "path": getattr(handler, "path", None),
        "request_version": handler.request_version,
        "requestline": getattr(handler, "requestline", None),
        "close_connection": handler.close_connection,
        "headers": headers,
        "sent": handler.wfile.getvalue(),
    }


class StandardHandler(SesRequestHandler):
    """SesRequestHandler with http.server's own parse_request."""

    def parse_request(self):
        return BaseHTTPRequestHandler.parse_request(self)


REQUESTS = {
    "post": b"POST /v2/email/outbound-emails HTTP/1.1\r\n" + SIGNED_HEADERS + b"\r\n{}",
    "get_lf": b"GET /v2/email/account HTTP/1.1\nHost: a\n\n",
    "double_slash": b"GET //v2/email/account HTTP/1.1\r\nHost: a\r\n\r\n",
    "absolute_target": b"GET http://127.0.0.1:4581/v2/email/account?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    "connection_close": b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n",
    "connection_keep_alive": b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
    "expect_continue": b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n{}",
    "folded_header": b"GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
    "http_1_0": b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    "http_0_9": b"GET /\r\n",
    "http_2": b"GET / HTTP/2.0\r\n\r\n",
    "bad_version": b"GET / HTTPS/1.1\r\n\r\n",
    "extra_word": b"GET / x HTTP/1.1\r\n\r\n",
    "tab_separated": b"GET\t/\tHTTP/1.1\r\n\r\n",
    "too_many_headers": b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",
    "header_line_too_long": b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
    "latin1_target": b"GET /caf\xe9 HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_parse_matches_http_server(name):
    fast = parse_with(SesRequestHandler, REQUESTS[name])
    standard = parse_with(StandardHandler, REQUESTS[name])
    for key in standard:
        assert fast[key] == standard[key], key
