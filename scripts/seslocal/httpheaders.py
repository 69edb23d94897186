"""HTTP request parsing with a fast path for the plain requests that SES clients send.

http.server parses the header block with the email package, which costs
more than the rest of a SendEmail request's HTTP handling. A header block
whose lines are all plain "Name: value" lines is split here with one
regular expression, and any other block goes to the email package as in
http.client.parse_headers. Both give the same http.client.HTTPMessage.
"""

import email.parser
import http.client
import re

# The limits of http.client.parse_headers in Python 3.11: 65536 bytes per
# line and 100 lines. The module's constants are private, so they are repeated here.
MAX_LINE_BYTES = 65536
MAX_HEADER_LINES = 100

# "METHOD TARGET HTTP/1.1" with printable ASCII words, which
# BaseHTTPRequestHandler.parse_request splits into exactly three words.
PLAIN_REQUEST_LINE = re.compile(rb"([\x21-\x7e]+) ([\x21-\x7e]+) HTTP/1\.1\r?\n")

# A header line that the email package (compat32 policy) reads as one field
# whose value is the rest of the line after the colon and any blanks, with
# trailing blanks kept. The name has the characters of the email package's
# header name pattern. The value has tabs and printable ASCII only, so the
# line has no character that the email package treats as a line break.
PLAIN_HEADER_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+):[ \t]*([\t\x20-\x7e]*)\r?\n")


def read_headers(rfile) -> http.client.HTTPMessage:
    """Read a header block and return it as http.client.parse_headers does, with the same errors."""
    return parse_header_lines(read_header_lines(rfile))


def read_header_lines(rfile) -> list[bytes]:
    """Read the header lines and the line that ends them, within http.client's limits."""
    lines = []
    while True:
        line = rfile.readline(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADER_LINES:
            raise http.client.HTTPException(f"got more than {MAX_HEADER_LINES} headers")
        if line in (b"\r\n", b"\n", b""):
            return lines


def parse_header_lines(lines: list[bytes]) -> http.client.HTTPMessage:
    """Return the headers in lines from read_header_lines."""
    message = http.client.HTTPMessage()
    for line in lines[:-1]:
        match = PLAIN_HEADER_LINE.fullmatch(line)
        if match is None:
            return parse_header_lines_with_email(lines)
        name, value = match.groups()
        message.set_raw(name.decode("ascii"), value.decode("ascii"))
    return message


def parse_header_lines_with_email(lines: list[bytes]) -> http.client.HTTPMessage:
    """Parse the header lines with the email package, as http.client.parse_headers does."""
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(text)
