"""systemd notifications of the running daemons.

A datagram socket replaces systemd's: every daemon of a stack gets
its path in NOTIFY_SOCKET, and SO_PASSCRED tells which process sent each
message. The ingress must send READY=1 once it listens, RELOADING=1 then
READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM; the deliver workers
and the controller READY=1 at start and STOPPING=1 on SIGTERM.
"""

import os
import signal
import socket
import struct
import time

import pytest

from test_ingress_starttls import TlsStack, make_certificate

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092")) + 400


class NotifyStack(TlsStack):
    """A STARTTLS stack whose daemons send to notify_path."""

    notify_path = None

    def daemon_env(self):
        env = super().daemon_env()
        env["NOTIFY_SOCKET"] = self.notify_path
        return env


class NotifyListener:
    """A bound socket in place of systemd's notification socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.received = []      # (pid, message)

    def poll(self, timeout):
        """Read every datagram that arrives within timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data, ancillary, _, _ = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(12))
                pid = None
                for level, kind, payload in ancillary:
                    if (level == socket.SOL_SOCKET and
                            kind == socket.SCM_CREDENTIALS):
                        pid = struct.unpack("iII", payload[:12])[0]
                self.received.append((pid, data.decode()))
        except socket.timeout:
            pass

    def wait_for(self, pid, prefix, timeout=30):
        """Return the first message from pid starting with prefix."""
        deadline = time.monotonic() + timeout
        while True:
            for sender, message in self.received:
                if sender == pid and message.startswith(prefix):
                    return message
            if time.monotonic() > deadline:
                return None
            self.poll(0.5)

    def messages_from(self, pid):
        return [m for sender, m in self.received if sender == pid]

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def notify(tmp_path_factory):
    state_dir = str(tmp_path_factory.mktemp("notify-stack"))
    listener = NotifyListener(os.path.join(state_dir, "notify.sock"))
    stack = NotifyStack(state_dir, base_port=BASE_PORT,
                        log=lambda text: None)
    stack.notify_path = os.path.join(state_dir, "notify.sock")
    make_certificate(stack.cert_path, stack.key_path, "notify.ferry.test")
    try:
        with stack as running:
            yield running, listener
    finally:
        listener.close()


def pid_of(stack, name):
    return stack.processes[name][0].pid


def test_ingress_ready_reload_stopping(notify):
    stack, listener = notify
    pid = pid_of(stack, "ingress")
    assert listener.wait_for(pid, "READY=1") == "READY=1"

    os.kill(pid, signal.SIGHUP)
    reloading = listener.wait_for(pid, "RELOADING=1")
    assert reloading is not None, listener.messages_from(pid)
    assert "\nMONOTONIC_USEC=" in reloading
    listener.poll(1)
    assert listener.messages_from(pid)[-2:] == [reloading, "READY=1"]

    assert stack.stop_process("ingress") == 0
    assert listener.wait_for(pid, "STOPPING=1") == "STOPPING=1"


def test_deliver_ready_and_stopping(notify):
    stack, listener = notify
    pid = pid_of(stack, "deliver-us-east-1")
    assert listener.wait_for(pid, "READY=1") == "READY=1"
    assert stack.stop_process("deliver-us-east-1") == 0
    assert listener.wait_for(pid, "STOPPING=1") == "STOPPING=1"


def test_controller_ready_and_stopping(notify):
    stack, listener = notify
    pid = stack.start_controller().pid
    assert listener.wait_for(pid, "READY=1") == "READY=1"
    assert stack.stop_process("controller") == 0
    assert listener.wait_for(pid, "STOPPING=1") == "STOPPING=1"

