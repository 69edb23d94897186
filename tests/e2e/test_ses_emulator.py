"""ferry-deliver against a third-party SES v2 emulator, aws-ses-v2-local.

ses-local was written alongside Ferry's SES client, so both could share a
misreading of the SES v2 API. Here us-east-1's ses_endpoint points at
aws-ses-v2-local (npm, installed into .cache/ses-emulator by
scripts/install-deps), a few messages go through ferry-ingress and
ferry-deliver, and the emulator's GET /store must list each of them once.
"""

import collections
import json
import os
import socket
import time
import urllib.request

import pytest

import corpus
import ferrystack
import summary
from conftest import BASE_PORT

EMULATOR = os.path.join(ferrystack.ROOT, ".cache", "ses-emulator",
                        "node_modules", ".bin", "aws-ses-v2-local")
REGION = "us-east-1"
ORG = ferrystack.ORGANIZATIONS[0]       # acme: us-east-1, mail.us-east-1

# Clear of the other stacks of the tests (BASE_PORT, +100 and +200).
EMULATOR_STACK_PORT = BASE_PORT + 300

# GetAccount of aws-ses-v2-local returns this variable, which must hold
# every field of its schema.
EMULATOR_ACCOUNT = {
    "DedicatedIpAutoWarmupEnabled": False,
    "Details": {"AdditionalContactEmailAddresses": [],
                "ContactLanguage": "EN", "MailType": "TRANSACTIONAL",
                "ReviewDetails": {"CaseId": "ferry", "Status": "GRANTED"},
                "UseCaseDescription": "Ferry tests",
                "WebsiteURL": "https://ferry.test"},
    "EnforcementStatus": "HEALTHY",
    "ProductionAccessEnabled": True,
    "SendingEnabled": True,
    "SendQuota": {"Max24HourSend": 1000, "MaxSendRate": 50,
                  "SentLast24Hours": 0},
    "SuppressionAttributes": {"SuppressedReasons": []},
}


def wait_port_free(port, timeout):
    """Wait until 127.0.0.1:port can be bound. The test ports lie in
    Linux's default ephemeral range (32768-60999), so a closed client
    connection may hold one in TIME-WAIT for up to a minute."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise
        time.sleep(1)


class EmulatorStack(ferrystack.Stack):
    """A Stack whose us-east-1 worker sends to aws-ses-v2-local."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.emulator_port = self.base_port + 26

    def write_config(self):
        super().write_config()
        with open(self.config_path) as f:
            text = f.read()
        text = text.replace(
            "ses_endpoint: http://127.0.0.1:%d" % self.ses_ports[REGION],
            "ses_endpoint: http://127.0.0.1:%d" % self.emulator_port)
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self):
        os.makedirs(self.state_dir, exist_ok=True)
        self.write_config()
        self.start_kafka()
        wait_port_free(self.emulator_port, timeout=70)
        env = dict(os.environ)
        env["AWS_SES_ACCOUNT"] = json.dumps(EMULATOR_ACCOUNT)
        proc = self.spawn("emulator", [EMULATOR, "--host", "127.0.0.1",
                                       "--port", str(self.emulator_port)],
                          env=env)
        if not ferrystack.wait_for_port(self.emulator_port, 30, proc):
            raise ferrystack.StackError("aws-ses-v2-local did not start:\n%s"
                                        % self.tail("emulator"))
        self.start_ingress()
        self.start_deliver(REGION)


@pytest.fixture(scope="module")
def emulator_stack(tmp_path_factory):
    if not os.path.exists(EMULATOR):
        pytest.skip("aws-ses-v2-local is not installed; run "
                    "scripts/install-deps")
    state_dir = str(tmp_path_factory.mktemp("emulator"))
    with EmulatorStack(state_dir, base_port=EMULATOR_STACK_PORT,
                       log=lambda text: None) as running:
        yield running
        assert running.crashed() == []


def emulator_emails(stack):
    url = "http://127.0.0.1:%d/store" % stack.emulator_port
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())["emails"]


def test_emulator_receives_each_once(emulator_stack):
    stack = emulator_stack
    messages = []
    for i in range(3):
        data = ("From: emulator%d@%s\r\nTo: rcpt%d@example.org\r\n"
                "Subject: ferry emulator check %d\r\n"
                "Message-ID: <emulator-%d@%s>\r\n\r\nbody %d\r\n"
                % (i, ORG["domain"], i, i, i, ORG["domain"], i)).encode()
        m = corpus.Message("emulator-%d" % i, data)
        m.org = ORG
        m.sender = "emulator%d@%s" % (i, ORG["domain"])
        m.recipients = ["rcpt%d@example.org" % i]
        messages.append(m)
    corpus.send_all(messages, stack.smtp_port, sessions=1, timeout=60)
    for m in messages:
        assert m.code == 250, "%s: %s %s" % (m.name, m.code, m.reply)

    lag = summary.wait_drained("127.0.0.1:%d" % stack.kafka_port,
                               ["ferry-deliver.%s" % REGION], timeout=60)
    assert lag == 0
    emails = emulator_emails(stack)
    subjects = collections.Counter(e.get("subject") for e in emails)
    for i in range(3):
        assert subjects["ferry emulator check %d" % i] == 1, emails
    by_subject = {e.get("subject"): e for e in emails}
    for i, m in enumerate(messages):
        email = by_subject["ferry emulator check %d" % i]
        assert m.sender in json.dumps(email.get("from"))
        assert m.recipients[0] in json.dumps(email.get("destination"))
