"""A small authoritative DNS server over UDP for the tests.

It answers TXT, CNAME and MX questions from a dictionary that the test may
change while it runs: NXDOMAIN for a name it does not have, an empty
NOERROR answer for a name without records of the asked type. Messages are
built with the struct module following RFC 1035 section 4; names in
answers are written without compression.
"""

import socket
import struct
import threading

TYPE_CNAME = 5
TYPE_MX = 15
TYPE_TXT = 16
TYPE_NAMES = {"CNAME": TYPE_CNAME, "MX": TYPE_MX, "TXT": TYPE_TXT}
CLASS_IN = 1
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
TTL_SECONDS = 60


def encode_name(name):
    labels = [label for label in name.rstrip(".").split(".") if label]
    encoded = b"".join(bytes([len(label)]) + label.encode("ascii")
                       for label in labels)
    return encoded + b"\x00"


def read_question(message):
    """Return (name, qtype, end offset) of the first question."""
    offset = 12
    labels = []
    while True:
        length = message[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(message[offset:offset + length].decode("ascii"))
        offset += length
    qtype, qclass = struct.unpack("!HH", message[offset:offset + 4])
    return ".".join(labels), qtype, qclass, offset + 4


def encode_rdata(rtype, value):
    if rtype == TYPE_TXT:
        # A TXT value longer than 255 bytes is split into several strings.
        data = value.encode("utf-8")
        chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        return b"".join(bytes([len(chunk)]) + chunk for chunk in chunks)
    if rtype == TYPE_CNAME:
        return encode_name(value)
    preference, exchange = value
    return struct.pack("!H", preference) + encode_name(exchange)


class DnsServer:
    """Serves records from zone: {name: {"TXT": [...], "CNAME": [...],
    "MX": [(preference, exchange), ...]}} on 127.0.0.1:port over UDP."""

    def __init__(self, port):
        self.zone = {}
        self.lock = threading.Lock()
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def set_records(self, name, rtype, values):
        """Replace the records of one type at name; [] removes them."""
        with self.lock:
            records = self.zone.setdefault(name.lower().rstrip("."), {})
            records[rtype] = list(values)

    def serve(self):
        while not self.stopping.is_set():
            try:
                message, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            response = self.answer(message)
            if response is not None:
                self.sock.sendto(response, peer)

    def answer(self, message):
        if len(message) < 12:
            return None
        query_id, flags = struct.unpack("!HH", message[:4])
        if flags & 0x8000:
            return None                     # a response, not a query
        recursion_desired = flags & 0x0100

        try:
            name, qtype, qclass, end = read_question(message)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error):
            return struct.pack("!HHHHHH", query_id,
                               0x8400 | recursion_desired | RCODE_FORMERR,
                               0, 0, 0, 0)
        question = message[12:end]

        key = name.lower()
        with self.lock:
            self.queries.append((key, qtype))
            records = self.zone.get(key)
            if records is not None and not any(records.values()):
                records = None
            values = []
            if records is not None:
                for type_name, type_code in TYPE_NAMES.items():
                    if type_code == qtype:
                        values = list(records.get(type_name, []))
        if records is None:
            rcode = RCODE_NXDOMAIN
        elif qclass != CLASS_IN or qtype not in TYPE_NAMES.values():
            rcode, values = RCODE_NOTIMP, []
        else:
            rcode = 0

        answers = b""
        for value in values:
            rdata = encode_rdata(qtype, value)
            answers += encode_name(name) + struct.pack(
                "!HHIH", qtype, CLASS_IN, TTL_SECONDS, len(rdata)) + rdata

        # QR, AA and RA set; RD copied from the query.
        header = struct.pack("!HHHHHH", query_id,
                             0x8480 | recursion_desired | rcode, 1,
                             len(values), 0, 0)
        return header + question + answers
