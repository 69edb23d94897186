"""scripts/ses-local driven by a real botocore sesv2 client over loopback.

Each test starts its own ses-local on a free 127.0.0.1 port with a fresh
state directory and stops it by its PID at teardown.
"""

import base64
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError

from seslocal import temporary

ROOT = Path(__file__).resolve().parents[2]
SES_LOCAL = ROOT / "scripts" / "ses-local"
REGION = "us-east-1"
ACCESS_KEY_ID = "AKIDFERRYLOCAL"
SECRET_ACCESS_KEY = "ferry-local-secret"
ENVELOPE_TAG = "ferry-envelope-id"
START_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 10

RAW_MESSAGE = (
    b"From: sender@example.com\r\n"
    b"To: rcpt@example.org\r\n"
    b"Subject: ses-local test\r\n"
    b"Message-ID: <ses-local-test@example.com>\r\n"
    b"\r\n"
    b"Hello from the ses-local tests.\r\n"
)
MESSAGE_ID_PATTERN = re.compile(r"^0100[0-9a-f]{12}-[0-9a-f-]{36}-000000$")
# One botocore session for all clients, so the sesv2 model is loaded once.
BOTOCORE_SESSION = botocore.session.get_session()


class Endpoint:
    """A running ses-local process and helpers to reach it."""

    def __init__(self, process: subprocess.Popen, port: int, state_dir: Path, log_path: Path):
        self.process = process
        self.port = port
        self.state_dir = state_dir
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    def client(self, access_key_id=ACCESS_KEY_ID, secret_access_key=SECRET_ACCESS_KEY,
               region=REGION, session_token=None, read_timeout=10):
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=read_timeout)
        return BOTOCORE_SESSION.create_client(
            "sesv2",
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            config=config,
        )

    def control(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def control_status(self, method, path, body):
        try:
            self.control(method, path, body)
        except urllib.error.HTTPError as error:
            return error.code
        return 200

    def ledger_file_entries(self):
        path = self.state_dir / "ledger.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_listening_line(process: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            line = process.stdout.readline()
            if line.startswith("ses-local: listening on "):
                return line
            if not line and process.poll() is not None:
                break
    raise AssertionError(f"ses-local did not report listening; log:\n{log_path.read_text()}")


def stop_process(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.stdout.close()
    return process.returncode


@pytest.fixture
def start_endpoint(tmp_path):
    """Return a function that starts ses-local with extra arguments; all are stopped at teardown."""
    started = []

    def start(*extra_args, env=None, pass_credentials=True):
        index = len(started)
        state_dir = tmp_path / f"ses-{index}"
        log_path = tmp_path / f"ses-{index}.log"
        credential_args = ["--access-key-id", ACCESS_KEY_ID, "--secret-access-key", SECRET_ACCESS_KEY]
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, str(SES_LOCAL), "--region", REGION, "--port", "0",
                 "--state-dir", str(state_dir), *(credential_args if pass_credentials else []), *extra_args],
                stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, text=True,
                env=env,
            )
        endpoint = Endpoint(process, 0, state_dir, log_path)
        started.append(endpoint)
        line = read_listening_line(process, log_path)
        endpoint.port = int(re.search(r":(\d+) ", line).group(1))
        endpoint.url = f"http://127.0.0.1:{endpoint.port}"
        return endpoint

    yield start
    for endpoint in started:
        stop_process(endpoint.process)


@pytest.fixture
def endpoint(start_endpoint):
    return start_endpoint("--identity", "example.com")


def send(client, envelope_id="envelope-1", raw=RAW_MESSAGE, **overrides):
    params = {
        "FromEmailAddress": "sender@example.com",
        "Destination": {"ToAddresses": ["rcpt@example.org"], "CcAddresses": ["cc@example.org"]},
        "Content": {"Raw": {"Data": raw}},
        "EmailTags": [{"Name": ENVELOPE_TAG, "Value": envelope_id}],
    }
    params.update(overrides)
    return client.send_email(**params)


def client_error(call) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    return info.value


def signed_request(endpoint, method, path, body=b"", secret_access_key=SECRET_ACCESS_KEY):
    request = AWSRequest(method=method, url=endpoint.url + path, data=body,
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(ACCESS_KEY_ID, secret_access_key), "ses", REGION).add_auth(request)
    return request


def send_raw_http(endpoint, method, path, body=b"", headers=None, connection=None):
    """Send one request with http.client and return (status, headers, body)."""
    connection = connection or http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    connection.request(method, path, body=body, headers=dict(headers or {}))
    response = connection.getresponse()
    return response.status, response.headers, response.read()


def send_email_body(**overrides) -> bytes:
    params = {"Content": {"Raw": {"Data": base64.b64encode(RAW_MESSAGE).decode()}}}
    params.update(overrides)
    return json.dumps(params).encode()


# SendEmail and the ledger


def test_send_email_returns_message_id(endpoint):
    response = send(endpoint.client())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert MESSAGE_ID_PATTERN.match(response["MessageId"])


def test_ledger_line_fields(endpoint):
    message_id = send(endpoint.client(), envelope_id="envelope-7")["MessageId"]
    entries = endpoint.ledger_file_entries()
    assert len(entries) == 1
    entry = entries[0]
    assert entry["message_id"] == message_id
    assert entry["region"] == REGION
    assert entry["sha256"] == hashlib.sha256(RAW_MESSAGE).hexdigest()
    assert entry["size"] == len(RAW_MESSAGE)
    assert entry["envelope_id"] == "envelope-7"
    assert entry["destinations"] == ["rcpt@example.org", "cc@example.org"]
    assert entry["from"] == "sender@example.com"
    assert entry["attempt"] == 1
    assert entry["received_at"].endswith("Z")
    assert datetime.datetime.fromisoformat(entry["received_at"].replace("Z", "+00:00"))


def test_ledger_without_envelope_tag(endpoint):
    endpoint.client().send_email(Content={"Raw": {"Data": RAW_MESSAGE}})
    entry = endpoint.ledger_file_entries()[0]
    assert entry["envelope_id"] is None
    assert entry["destinations"] == []


def test_eml_file_has_raw_bytes(endpoint):
    message_id = send(endpoint.client())["MessageId"]
    assert (endpoint.state_dir / "messages" / f"{message_id}.eml").read_bytes() == RAW_MESSAGE


def test_attempt_counts_repeated_envelope(endpoint):
    client = endpoint.client()
    send(client, envelope_id="envelope-r")
    send(client, envelope_id="envelope-other")
    send(client, envelope_id="envelope-r")
    attempts = [(entry["envelope_id"], entry["attempt"]) for entry in endpoint.ledger_file_entries()]
    assert attempts == [("envelope-r", 1), ("envelope-other", 1), ("envelope-r", 2)]


def test_control_ledger_matches_file(endpoint):
    send(endpoint.client(), envelope_id="envelope-a")
    send(endpoint.client(), envelope_id="envelope-b")
    assert endpoint.control("GET", "/_ferry/ledger") == endpoint.ledger_file_entries()
    filtered = endpoint.control("GET", "/_ferry/ledger?envelope_id=envelope-b")
    assert [entry["envelope_id"] for entry in filtered] == ["envelope-b"]


def test_simple_content_rejected(endpoint):
    error = client_error(lambda: endpoint.client().send_email(
        FromEmailAddress="sender@example.com",
        Destination={"ToAddresses": ["rcpt@example.org"]},
        Content={"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}},
    ))
    assert error.response["Error"]["Code"] == "BadRequestException"
    assert error.response["Error"]["Message"] == "only raw content is supported by ses-local"


def test_unknown_parameter_rejected(endpoint):
    body = send_email_body(Bogus=1)
    request = signed_request(endpoint, "POST", "/v2/email/outbound-emails", body)
    status, headers, response_body = send_raw_http(endpoint, "POST", "/v2/email/outbound-emails",
                                                   body, request.headers)
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "BadRequestException"
    assert "Unknown parameter" in json.loads(response_body)["message"]


def test_invalid_base64_rejected(endpoint):
    body = json.dumps({"Content": {"Raw": {"Data": "not base64!"}}}).encode()
    request = signed_request(endpoint, "POST", "/v2/email/outbound-emails", body)
    status, headers, _ = send_raw_http(endpoint, "POST", "/v2/email/outbound-emails", body, request.headers)
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "BadRequestException"


def test_oversized_message_rejected(endpoint):
    # 31 MiB of raw bytes is about 41.3 MiB after base64, above the 40 MiB limit.
    raw = RAW_MESSAGE + b"x" * (31 * 1024 * 1024)
    error = client_error(lambda: send(endpoint.client(read_timeout=60), raw=raw))
    assert error.response["Error"]["Code"] == "MessageRejected"
    assert endpoint.ledger_file_entries() == []


def test_chunked_body_accepted(endpoint):
    body = send_email_body(EmailTags=[{"Name": ENVELOPE_TAG, "Value": "envelope-chunked"}])
    request = signed_request(endpoint, "POST", "/v2/email/outbound-emails", body)
    headers = {name: value for name, value in request.headers.items() if name != "Content-Length"}
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    chunks = [body[:100], body[100:]]
    connection.request("POST", "/v2/email/outbound-emails", body=iter(chunks), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    assert endpoint.ledger_file_entries()[0]["envelope_id"] == "envelope-chunked"


def test_keep_alive_reuses_connection(endpoint):
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    statuses = []
    for _ in range(2):
        request = signed_request(endpoint, "GET", "/v2/email/account")
        status, _, _ = send_raw_http(endpoint, "GET", "/v2/email/account", b"", request.headers, connection)
        statuses.append(status)
    assert statuses == [200, 200]
    connection.close()


# GetAccount and identities


def test_get_account_fields(start_endpoint):
    endpoint = start_endpoint("--max-send-rate", "14", "--max-24-hour-send", "50000")
    send(endpoint.client())
    account = endpoint.client().get_account()
    assert account["SendQuota"]["MaxSendRate"] == 14.0
    assert account["SendQuota"]["Max24HourSend"] == 50000.0
    # Two recipients: one To and one Cc address.
    assert account["SendQuota"]["SentLast24Hours"] == 2.0
    assert account["SendingEnabled"] is True
    assert account["ProductionAccessEnabled"] is True
    assert account["EnforcementStatus"] == "HEALTHY"
    assert account["DedicatedIpAutoWarmupEnabled"] is False


def test_list_email_identities(start_endpoint):
    endpoint = start_endpoint("--identity", "example.com", "--identity", "ops@example.net")
    identities = endpoint.client().list_email_identities()["EmailIdentities"]
    by_name = {identity["IdentityName"]: identity for identity in identities}
    assert sorted(by_name) == ["example.com", "ops@example.net"]
    assert by_name["example.com"]["IdentityType"] == "DOMAIN"
    assert by_name["ops@example.net"]["IdentityType"] == "EMAIL_ADDRESS"
    assert by_name["example.com"]["VerificationStatus"] == "SUCCESS"


def test_get_email_identity_verified(endpoint):
    identity = endpoint.client().get_email_identity(EmailIdentity="example.com")
    assert identity["VerifiedForSendingStatus"] is True
    assert identity["IdentityType"] == "DOMAIN"


def test_get_email_identity_not_found(endpoint):
    error = client_error(lambda: endpoint.client().get_email_identity(EmailIdentity="other@example.org"))
    assert error.response["Error"]["Code"] == "NotFoundException"


def test_unverified_sender_rejected(endpoint):
    error = client_error(lambda: send(endpoint.client(), FromEmailAddress="mallory@evil.example"))
    assert error.response["Error"]["Code"] == "MessageRejected"
    assert error.response["Error"]["Message"] == (
        "Email address is not verified. The following identities failed the check "
        "in region US-EAST-1: mallory@evil.example"
    )
    assert endpoint.ledger_file_entries() == []


def test_unverified_raw_from_rejected(endpoint):
    raw = RAW_MESSAGE.replace(b"sender@example.com", b"mallory@evil.example")
    error = client_error(lambda: endpoint.client().send_email(Content={"Raw": {"Data": raw}}))
    assert error.response["Error"]["Code"] == "MessageRejected"


def test_subdomain_of_identity_verified(endpoint):
    response = send(endpoint.client(), FromEmailAddress="Bounce Handler <bounce@mail.example.com>")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_identities_control_replaces(endpoint):
    endpoint.control("POST", "/_ferry/identities", {"identities": ["evil.example"]})
    response = send(endpoint.client(), FromEmailAddress="mallory@evil.example")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    error = client_error(lambda: send(endpoint.client()))
    assert error.response["Error"]["Code"] == "MessageRejected"


def test_pending_identity_cannot_send(endpoint):
    endpoint.control("POST", "/_ferry/identities",
                     {"identities": ["example.com"], "pending": ["wait.example"]})
    identity = endpoint.client().get_email_identity(EmailIdentity="wait.example")
    assert identity["VerifiedForSendingStatus"] is False
    assert identity["VerificationStatus"] == "PENDING"
    assert identity["DkimAttributes"]["Status"] == "PENDING"
    assert len(identity["DkimAttributes"]["Tokens"]) == 3
    error = client_error(lambda: send(endpoint.client(), FromEmailAddress="ops@wait.example"))
    assert error.response["Error"]["Code"] == "MessageRejected"
    response = send(endpoint.client())
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert endpoint.control("GET", "/_ferry/identities") == {
        "identities": ["example.com"], "pending": ["wait.example"]}


def test_identity_in_both_lists_rejected(endpoint):
    status = endpoint.control_status("POST", "/_ferry/identities",
                                     {"identities": ["a.example"], "pending": ["A.example"]})
    assert status == 400


def test_sending_control_pauses(endpoint):
    endpoint.control("POST", "/_ferry/sending", {"enabled": False})
    error = client_error(lambda: send(endpoint.client()))
    assert error.response["Error"]["Code"] == "SendingPausedException"
    assert endpoint.client().get_account()["SendingEnabled"] is False
    endpoint.control("POST", "/_ferry/sending", {"enabled": True})
    assert send(endpoint.client())["ResponseMetadata"]["HTTPStatusCode"] == 200


# SigV4 verification


def test_wrong_secret_rejected(endpoint):
    error = client_error(lambda: send(endpoint.client(secret_access_key="not-the-secret")))
    assert error.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_wrong_region_scope_rejected(endpoint):
    error = client_error(lambda: send(endpoint.client(region="eu-west-1")))
    assert error.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert "'eu-west-1'" in error.response["Error"]["Message"]
    assert "'us-east-1'" in error.response["Error"]["Message"]


def test_unknown_access_key_rejected(endpoint):
    error = client_error(lambda: send(endpoint.client(access_key_id="AKIDUNKNOWN")))
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"


def test_expired_signature_rejected(endpoint):
    client = endpoint.client()
    ten_minutes_ago = datetime.datetime.utcnow() - datetime.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=ten_minutes_ago):
        error = client_error(lambda: send(client))
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["Error"]["Message"].startswith("Signature expired: ")


def test_future_signature_rejected(endpoint):
    client = endpoint.client()
    ten_minutes_ahead = datetime.datetime.utcnow() + datetime.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=ten_minutes_ahead):
        error = client_error(lambda: client.get_account())
    assert error.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.response["Error"]["Message"].startswith("Signature not yet current: ")


def test_signed_security_token_accepted(endpoint):
    response = endpoint.client(session_token="any-session-token").get_account()
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_temporary_keys_with_token_accepted(endpoint):
    key_id, secret, token = temporary.issue(SECRET_ACCESS_KEY)
    client = endpoint.client(access_key_id=key_id, secret_access_key=secret,
                             session_token=token)
    assert client.get_account()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_temporary_keys_with_other_token_rejected(endpoint):
    key_id, secret, _ = temporary.issue(SECRET_ACCESS_KEY)
    _, _, other_token = temporary.issue(SECRET_ACCESS_KEY)
    client = endpoint.client(access_key_id=key_id, secret_access_key=secret,
                             session_token=other_token)
    error = client_error(lambda: client.get_account())
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"


def test_temporary_keys_without_token_rejected(endpoint):
    key_id, secret, _ = temporary.issue(SECRET_ACCESS_KEY)
    client = endpoint.client(access_key_id=key_id, secret_access_key=secret)
    error = client_error(lambda: client.get_account())
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"


def test_unsigned_security_token_rejected(endpoint):
    request = signed_request(endpoint, "GET", "/v2/email/account")
    headers = dict(request.headers, **{"X-Amz-Security-Token": "added-after-signing"})
    status, response_headers, _ = send_raw_http(endpoint, "GET", "/v2/email/account", b"", headers)
    assert status == 403
    assert response_headers["x-amzn-ErrorType"] == "IncompleteSignatureException"


def test_host_not_signed_rejected(endpoint):
    request = signed_request(endpoint, "GET", "/v2/email/account")
    authorization = request.headers["Authorization"].replace("host;", "")
    assert "host" not in authorization
    headers = dict(request.headers, Authorization=authorization)
    status, response_headers, _ = send_raw_http(endpoint, "GET", "/v2/email/account", b"", headers)
    assert status == 403
    assert response_headers["x-amzn-ErrorType"] == "IncompleteSignatureException"


def test_content_sha256_mismatch_rejected(endpoint):
    body = send_email_body()
    request = AWSRequest(method="POST", url=endpoint.url + "/v2/email/outbound-emails", data=body,
                         headers={"Content-Type": "application/json",
                                  "X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()})
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "ses", REGION).add_auth(request)
    status, headers, _ = send_raw_http(endpoint, "POST", "/v2/email/outbound-emails", body, request.headers)
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "SignatureDoesNotMatch"


def test_signed_query_string_verifies(start_endpoint):
    endpoint = start_endpoint("--identity", "a.example", "--identity", "b.example")
    request = signed_request(endpoint, "GET", "/v2/email/identities?PageSize=1")
    status, _, body = send_raw_http(endpoint, "GET", "/v2/email/identities?PageSize=1", b"", request.headers)
    assert status == 200
    page = json.loads(body)
    assert [identity["IdentityName"] for identity in page["EmailIdentities"]] == ["a.example"]
    assert page["NextToken"] == "1"


def test_missing_authorization_rejected(endpoint):
    status, headers, _ = send_raw_http(endpoint, "GET", "/v2/email/account")
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_tampered_body_rejected(endpoint):
    body = send_email_body()
    request = signed_request(endpoint, "POST", "/v2/email/outbound-emails", body)
    tampered = body.replace(b"Content", b"Content ", 1)
    status, headers, response_body = send_raw_http(endpoint, "POST", "/v2/email/outbound-emails",
                                                   tampered, request.headers)
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "SignatureDoesNotMatch"
    assert "Canonical String" in json.loads(response_body)["message"]


def test_percent_encoded_path_verifies(endpoint):
    endpoint.control("POST", "/_ferry/identities", {"identities": ["ops@example.com"]})
    identity = endpoint.client().get_email_identity(EmailIdentity="ops@example.com")
    assert identity["IdentityType"] == "EMAIL_ADDRESS"


# Faults


FAULT_ERROR_CASES = [
    ({"fault": "throttle"}, 429, "TooManyRequestsException", "Maximum sending rate exceeded."),
    ({"fault": "daily_quota"}, 429, "TooManyRequestsException", "Daily message quota exceeded."),
    ({"fault": "error"}, 503, "ServiceUnavailable", None),
    ({"fault": "error", "status": 500}, 500, "InternalFailure", None),
    ({"fault": "sending_paused"}, 400, "SendingPausedException", None),
    ({"fault": "account_suspended"}, 400, "AccountSuspendedException", None),
    ({"fault": "message_rejected"}, 400, "MessageRejected", "Message rejected: virus detected"),
    ({"fault": "error", "status": 502, "code": "BadGateway", "message": "upstream"}, 502, "BadGateway", "upstream"),
    ({"fault": "throttle", "status": 400}, 400, "TooManyRequestsException", "Maximum sending rate exceeded."),
]


@pytest.mark.parametrize("fault, status, code, message", FAULT_ERROR_CASES,
                         ids=[f"{case[0]['fault']}-{case[1]}" for case in FAULT_ERROR_CASES])
def test_fault_error_response(endpoint, fault, status, code, message):
    endpoint.control("POST", "/_ferry/faults", dict(fault, count=1))
    error = client_error(lambda: send(endpoint.client()))
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error.response["Error"]["Code"] == code
    if message is not None:
        assert error.response["Error"]["Message"] == message
    assert endpoint.ledger_file_entries() == []


def test_fault_clears_after_count(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "throttle", "count": 2})
    client = endpoint.client()
    codes = []
    for _ in range(2):
        codes.append(client_error(lambda: send(client)).response["Error"]["Code"])
    assert codes == ["TooManyRequestsException", "TooManyRequestsException"]
    assert send(client)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert endpoint.control("GET", "/_ferry/faults") == {"fault": None}


def test_fault_clears_after_seconds(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "throttle", "seconds": 0.5})
    client = endpoint.client()
    assert client_error(lambda: send(client)).response["Error"]["Code"] == "TooManyRequestsException"
    time.sleep(0.7)
    assert send(client)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_fault_probability_zero_never_matches(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "throttle", "probability": 0.0})
    assert send(endpoint.client())["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_fault_delete_clears(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "throttle"})
    assert endpoint.control("GET", "/_ferry/faults")["fault"]["fault"] == "throttle"
    endpoint.control("DELETE", "/_ferry/faults")
    assert send(endpoint.client())["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_fault_invalid_rejected(endpoint):
    assert endpoint.control_status("POST", "/_ferry/faults", {"fault": "meteor"}) == 400
    assert endpoint.control_status("POST", "/_ferry/faults", {"fault": "throttle", "count": 0}) == 400
    assert endpoint.control_status("POST", "/_ferry/faults", {"fault": "reset", "status": 500}) == 400
    assert endpoint.control_status("POST", "/_ferry/faults", {"fault": "throttle", "status": 200}) == 400


def test_error_fault_hits_get_account(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "error", "count": 1})
    error = client_error(lambda: endpoint.client().get_account())
    assert error.response["Error"]["Code"] == "ServiceUnavailable"


def test_sending_paused_fault_in_get_account(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "sending_paused"})
    assert endpoint.client().get_account()["SendingEnabled"] is False


def test_account_suspended_fault_in_get_account(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "account_suspended"})
    account = endpoint.client().get_account()
    assert account["SendingEnabled"] is False
    assert account["EnforcementStatus"] == "SHUTDOWN"


def test_reset_fault_breaks_connection(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "reset", "count": 1})
    client = endpoint.client()
    with pytest.raises(HTTPClientError):
        send(client)
    assert endpoint.ledger_file_entries() == []
    assert send(client)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_reset_fault_sends_tcp_reset(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "reset", "count": 1})
    request = signed_request(endpoint, "GET", "/v2/email/account")
    with pytest.raises(ConnectionResetError):
        send_raw_http(endpoint, "GET", "/v2/email/account", b"", request.headers)


def test_hang_fault_times_out(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "hang", "count": 1})
    with pytest.raises(ReadTimeoutError):
        send(endpoint.client(read_timeout=1))
    assert endpoint.ledger_file_entries() == []
    assert send(endpoint.client())["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_hang_fault_released_by_delete(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "hang"})
    request = signed_request(endpoint, "GET", "/v2/email/account")
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    connection.request("GET", "/v2/email/account", headers=dict(request.headers))
    time.sleep(0.3)
    endpoint.control("DELETE", "/_ferry/faults")
    with pytest.raises(http.client.RemoteDisconnected):
        connection.getresponse()


def test_drop_response_keeps_ledger_line(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "drop_response", "count": 1})
    with pytest.raises(HTTPClientError):
        send(endpoint.client(), envelope_id="envelope-dropped")
    entries = endpoint.control("GET", "/_ferry/ledger")
    assert [entry["envelope_id"] for entry in entries] == ["envelope-dropped"]
    send(endpoint.client(), envelope_id="envelope-dropped")
    assert endpoint.ledger_file_entries()[-1]["attempt"] == 2


def test_stats_count_outcomes(endpoint):
    endpoint.control("POST", "/_ferry/faults", {"fault": "throttle", "count": 1})
    client = endpoint.client()
    client_error(lambda: send(client))
    send(client)
    stats = endpoint.control("GET", "/_ferry/stats")
    assert stats["by_operation"]["SendEmail"] == {"TooManyRequestsException": 1, "accepted": 1}


# Quota


def test_rate_limit_throttles(endpoint):
    endpoint.control("POST", "/_ferry/quota", {"max_send_rate": 2})
    client = endpoint.client()
    # Each send has two recipients, so the second send within a second exceeds 2 per second.
    send(client)
    error = client_error(lambda: send(client))
    assert error.response["Error"]["Code"] == "TooManyRequestsException"
    assert error.response["Error"]["Message"] == "Maximum sending rate exceeded."


def test_daily_quota_enforced(start_endpoint):
    endpoint = start_endpoint("--max-24-hour-send", "2")
    client = endpoint.client()
    send(client)
    error = client_error(lambda: send(client))
    assert error.response["Error"]["Code"] == "TooManyRequestsException"
    assert error.response["Error"]["Message"] == "Daily message quota exceeded."


# Process


def test_credentials_from_environment(start_endpoint):
    env = dict(os.environ, FERRY_SES_ACCESS_KEY_ID="AKIDFROMENV", FERRY_SES_SECRET_ACCESS_KEY="secret-from-env")
    endpoint = start_endpoint(env=env, pass_credentials=False)
    client = endpoint.client(access_key_id="AKIDFROMENV", secret_access_key="secret-from-env")
    assert client.get_account()["ResponseMetadata"]["HTTPStatusCode"] == 200
    error = client_error(lambda: endpoint.client().get_account())
    assert error.response["Error"]["Code"] == "UnrecognizedClientException"


def test_latency_delays_response(start_endpoint):
    endpoint = start_endpoint("--latency-ms", "300")
    client = endpoint.client()
    started = time.monotonic()
    client.get_account()
    assert time.monotonic() - started >= 0.3


def test_sigterm_stops_cleanly(endpoint):
    endpoint.process.send_signal(signal.SIGTERM)
    assert endpoint.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 0
    assert "stopped" in endpoint.log_path.read_text()


def test_request_logged(endpoint):
    send(endpoint.client(), envelope_id="envelope-logged")
    log_lines = [line for line in endpoint.log_path.read_text().splitlines() if "envelope_id=envelope-logged" in line]
    assert len(log_lines) == 1
    assert f"ses-local region={REGION} request " in log_lines[0]


# Several processes (--processes N)


def running_ses_local(pid: int) -> bool:
    """Return whether pid is a live ses-local process. A zombie or a reused PID does not count."""
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return b"ses-local" in command_line


@pytest.fixture
def three_processes(start_endpoint, tmp_path):
    pids_path = tmp_path / "worker-pids"
    endpoint = start_endpoint("--identity", "example.com", "--processes", "3",
                              "--worker-pids-file", str(pids_path))
    endpoint.worker_pids = [int(line) for line in pids_path.read_text().split()]
    return endpoint


def test_processes_share_one_ledger(three_processes):
    endpoint = three_processes
    assert len(endpoint.worker_pids) == 3
    assert endpoint.process.pid not in endpoint.worker_pids
    sends, envelopes, threads = 300, 100, 12

    def send_batch(batch):
        client = endpoint.client()
        return [send(client, envelope_id=f"envelope-{number % envelopes}",
                     raw=RAW_MESSAGE + f"Message {number}.\r\n".encode())["MessageId"]
                for number in batch]

    with concurrent.futures.ThreadPoolExecutor(threads) as executor:
        batches = executor.map(send_batch, [range(start, sends, threads) for start in range(threads)])
        message_ids = [message_id for batch in batches for message_id in batch]

    lines = (endpoint.state_dir / "ledger.jsonl").read_text().split("\n")
    assert lines[-1] == ""
    entries = [json.loads(line) for line in lines[:-1]]
    assert len(entries) == sends
    assert sorted(entry["message_id"] for entry in entries) == sorted(message_ids)
    for entry in entries:
        raw = (endpoint.state_dir / "messages" / f"{entry['message_id']}.eml").read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
    attempts_by_envelope = {}
    for entry in entries:
        attempts_by_envelope.setdefault(entry["envelope_id"], []).append(entry["attempt"])
    assert len(attempts_by_envelope) == envelopes
    for envelope_id, attempts in attempts_by_envelope.items():
        assert attempts == [1, 2, 3], envelope_id
    assert endpoint.control("GET", "/_ferry/ledger") == entries


def test_processes_stop_on_sigterm(three_processes):
    endpoint = three_processes
    assert all(running_ses_local(pid) for pid in endpoint.worker_pids)
    assert stop_process(endpoint.process) == 0
    still_running = [pid for pid in endpoint.worker_pids if running_ses_local(pid)]
    assert still_running == []


def test_processes_stop_when_one_dies(three_processes):
    endpoint = three_processes
    os.kill(endpoint.worker_pids[0], signal.SIGKILL)
    assert endpoint.process.wait(timeout=STOP_TIMEOUT_SECONDS) == 1
    still_running = [pid for pid in endpoint.worker_pids if running_ses_local(pid)]
    assert still_running == []
    assert "worker_exited worker=0" in endpoint.log_path.read_text()


@pytest.mark.parametrize("method, path", [
    ("GET", "/_ferry/stats"),
    ("POST", "/_ferry/faults"),
    ("GET", "/_ferry/quota"),
    ("POST", "/_ferry/identities"),
    ("POST", "/_ferry/sending"),
])
def test_processes_reject_per_process_control(three_processes, method, path):
    assert three_processes.control_status(method, path, {}) == 409


def test_processes_serve_health(three_processes):
    assert three_processes.control("GET", "/_ferry/health") == {"status": "ok", "region": REGION}
