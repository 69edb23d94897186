"""The command line of ferry-mock-kafka: one reply per input line.

The fixtures in conftest.py send one command and read one reply, so a
line that got no reply, or two, would desynchronize every later command.
"""

import os
import subprocess

import ferrystack

MOCK = os.path.join(ferrystack.BUILD, "ferry-mock-kafka")

# (command, expected reply), run in order on a cluster of 3 brokers.
CASES = [
    ("", "error: empty command"),
    ("bogus", "error: unknown command or wrong number of words"),
    ("topic t", "error: unknown command or wrong number of words"),
    ("topic t 0", "error: PARTITIONS must be 1 to 1000"),
    ("topic t x", "error: PARTITIONS must be 1 to 1000"),
    ("topic t 3", "ok"),
    ("topic t 3", "error: Broker: Topic already exists"),
    ("errors 1 Produce 2 INVALID_RECORD", "ok"),
    ("pending 1 Produce", "ok 2"),
    ("errors 2 Produce 1 NO_ERROR", "ok"),
    ("errors 4 Produce 1 INVALID_RECORD", "error: BROKER must be a broker id"),
    ("errors x Produce 1 INVALID_RECORD", "error: BROKER must be a broker id"),
    ("errors 1 Nope 1 INVALID_RECORD", "error: unknown request name"),
    ("errors 1 Produce 0 INVALID_RECORD", "error: COUNT must be 1 to 10000"),
    ("errors 1 Produce 1 NOT_AN_ERROR",
     "error: unknown error name NOT_AN_ERROR"),
    ("errors 1 Produce 1 _MSG_TIMED_OUT",
     "error: _MSG_TIMED_OUT is a local error, not a broker error"),
    ("errors 1 Produce 1 " + " ".join(["INVALID_RECORD"] * 17),
     "error: too many words"),
    ("pending 4 Produce", "error: usage: pending BROKER API"),
    ("pending 1 Nope", "error: usage: pending BROKER API"),
    ("down 4", "error: BROKER must be a broker id"),
    ("down 3", "ok"),
    ("up 3", "ok"),
    ("leader t 0 4", "error: usage: leader TOPIC PARTITION BROKER"),
    ("leader t 3 1", "error: Broker: Unknown topic or partition"),
    ("leader t 2 1", "ok"),
    ("coordinator g 4", "error: BROKER must be a broker id"),
    ("coordinator g 0", "error: BROKER must be a broker id"),
    ("coordinator g 2", "ok"),
]


def run_mock(data):
    """Feed data to a 3-broker ferry-mock-kafka; return its reply lines."""
    proc = subprocess.run([MOCK, "3"], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].startswith("bootstrap 127.0.0.1:")
    return lines[1:]


def test_mock_replies_per_command():
    data = "".join(command + "\n" for command, _ in CASES).encode()
    replies = run_mock(data)
    assert len(replies) == len(CASES)
    for (command, expected), reply in zip(CASES, replies):
        assert (command, reply) == (command, expected)


def test_mock_long_line_one_error():
    # The tail of the first line would take broker 1 down if it ran.
    data = b"x" * 2000 + b" down 1\n" + b"pending 1 Produce\n"
    assert run_mock(data) == ["error: line longer than 1022 bytes", "ok 0"]


def test_mock_longest_line_runs():
    line = b"pending 1 Produce" + b" " * (1022 - 17)
    assert len(line) == 1022
    assert run_mock(line + b"\n") == ["ok 0"]


def test_mock_huge_line_one_error():
    assert run_mock(b"y" * 10000000 + b"\n") == [
        "error: line longer than 1022 bytes"]


def test_mock_last_line_without_newline():
    assert run_mock(b"topic t 1") == ["ok"]


def test_mock_empty_input():
    assert run_mock(b"") == []
