#!/usr/bin/env python3
"""Write the client octets of each SMTP dialogue as a libFuzzer seed.

Usage: make_seeds.py OUTPUT_DIR DIALOGUE...

Each seed is two control octets for tests/fuzz/fuzz_smtp_session.c
(configuration and events, then the split seed) followed by the octets
of the dialogue's C: and W: lines, decoded as tests/smtp/README.md
describes. Each dialogue gives one seed per control variant.
"""

import os
import re
import sys

ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}

# Octet 0 variants: plain, STARTTLS offered with timeouts, IPv6 with
# shutdowns and failing produce calls.
CONTROLS = [b"\x00\x01", b"\x05\x2a", b"\x1a\x7f"]


def unescape(text):
    """Decode the escapes of a dialogue line into octets."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in ESCAPES:
            out += ESCAPES[nxt]
            i += 2
        elif nxt == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif nxt == "{":
            end = text.index("}", i)
            unit, count = text[i + 2:end].rsplit("*", 1)
            out += unescape(unit) * int(count)
            i = end + 1
        else:
            raise ValueError("invalid escape \\%s" % nxt)
    return bytes(out)


def client_octets(path):
    """Return everything the dialogue's client sends."""
    out = bytearray()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            match = re.match(r"([CW]): (.*)$", line)
            if match is None:
                continue
            out += unescape(match.group(2))
            if match.group(1) == "C":
                out += b"\r\n"
    return bytes(out)


def main(argv):
    out_dir = argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for path in argv[2:]:
        name = os.path.splitext(os.path.basename(path))[0]
        octets = client_octets(path)
        for i, control in enumerate(CONTROLS):
            with open(os.path.join(out_dir, "%s-%d" % (name, i)), "wb") as f:
                f.write(control + octets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
