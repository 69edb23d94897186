"""A raw SMTP client for the ingress's end-to-end tests: one connection
from a chosen loopback address, whose replies are read whole."""

import socket


class Client:
    """A raw SMTP connection from a chosen loopback address."""

    def __init__(self, stack, source="127.0.0.1"):
        self.sock = socket.create_connection(
            ("127.0.0.1", stack.smtp_port), timeout=30,
            source_address=(source, 0))
        self.file = self.sock.makefile("rb")

    def reply(self):
        """Return one whole reply, or "" when the server closed."""
        lines = []
        while True:
            line = self.file.readline().decode()
            if line == "":
                return "".join(lines)
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "".join(lines)

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def command(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self):
        """Return True when the server has closed the connection."""
        return self.file.read() == b""

    def close(self):
        self.file.close()
        self.sock.close()
