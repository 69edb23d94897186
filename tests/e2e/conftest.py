"""Fixtures that start a whole local Ferry for end-to-end tests.

Ports start at FERRY_TEST_PORT (default 29092), away from the demo's 19092,
so a demo and a test run can share a machine; each stack takes 30 ports
from its base. Every process is stopped by its PID at teardown.
"""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import ferrystack  # noqa: E402

BASE_PORT = int(os.environ.get("FERRY_TEST_PORT", "29092"))


def pytest_report_header(config):
    return "ferry: stacks on 127.0.0.1 from port %d" % BASE_PORT


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A running Ferry shared by the tests of one module."""
    state_dir = str(tmp_path_factory.mktemp("stack"))
    with ferrystack.Stack(state_dir, base_port=BASE_PORT,
                          log=lambda text: None) as running:
        yield running
        crashed = running.crashed()
        assert crashed == [], "daemons exited during the tests: %s" % crashed


@pytest.fixture
def base_port():
    """A base port for a test's own stack, clear of the shared one."""
    return BASE_PORT + 100
