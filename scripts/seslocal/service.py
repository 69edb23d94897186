"""The SES v2 operations that ses-local serves, independent of HTTP."""

import base64
import binascii
import functools
import hashlib
import json
import os
import threading
import time
from collections import Counter
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

import botocore.session
from botocore.validate import ParamValidator

from .errors import (
    MAX_RAW_MESSAGE_BASE64_BYTES,
    ApiError,
    bad_request,
    message_rejected,
    message_too_large,
    not_found,
)
from .faults import FaultInjector
from .ledger import Ledger
from .logs import format_rfc3339
from .quota import SendingQuota

ENVELOPE_ID_TAG = "ferry-envelope-id"
# SES accepts at most 50 To, CC and BCC recipients per message (Amazon SES
# developer guide, "Service quotas in Amazon SES").
MAX_RECIPIENTS = 50
MAX_PAGE_SIZE = 1000


def load_sesv2_model():
    return botocore.session.get_session().get_service_model("sesv2")


def random_uuid() -> str:
    """Return a random (version 4) UUID as str(uuid.uuid4()) does, without building a UUID object."""
    data = bytearray(os.urandom(16))
    data[6] = data[6] & 0x0F | 0x40  # version 4
    data[8] = data[8] & 0x3F | 0x80  # RFC 4122 variant
    text = data.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def new_message_id() -> str:
    """Return an id shaped like SES's: 0100 + 12 hex digits of Unix ms, a UUID and -000000."""
    milliseconds = time.time_ns() // 1_000_000
    return f"0100{milliseconds:012x}-{random_uuid()}-000000"


def rfc3339_now() -> str:
    return format_rfc3339(time.time())


@functools.lru_cache(maxsize=1024)
def parse_addresses(value: str) -> tuple[str, ...]:
    """Return the addresses in one address header value, as email.utils.getaddresses reads them.

    Cached because a sender sends many messages with the same FromEmailAddress.
    """
    return tuple(address for _, address in getaddresses([value]) if address)


def parse_json_object(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        params = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise bad_request(f"Request body is not valid JSON: {error}") from None
    if not isinstance(params, dict):
        raise bad_request("Request body must be a JSON object.")
    return params


class IdentityStore:
    """Identities: email addresses and domains, compared case-insensitively.

    Verified identities may send. Pending ones exist, as after
    CreateEmailIdentity before SES has found the DNS records, but may not
    send. A store without any identity verifies every sender. A domain
    identity also verifies the addresses of its subdomains.
    """

    def __init__(self, identities, pending=()):
        self._lock = threading.Lock()
        self._identities: list[str] = []
        self._pending: list[str] = []
        self.replace(identities, pending)

    @staticmethod
    def _clean(identities) -> list[str]:
        cleaned = []
        for identity in identities:
            if not isinstance(identity, str) or not identity.strip():
                raise ValueError(f"an identity must be a non-empty string, got {identity!r}")
            cleaned.append(identity.strip().lower())
        return sorted(set(cleaned))

    def replace(self, identities, pending=()) -> None:
        verified = self._clean(identities)
        waiting = self._clean(pending)
        both = sorted(set(verified) & set(waiting))
        if both:
            raise ValueError(f"identities cannot be both verified and pending: {', '.join(both)}")
        with self._lock:
            self._identities = verified
            self._pending = waiting

    def names(self) -> list[str]:
        with self._lock:
            return list(self._identities)

    def pending_names(self) -> list[str]:
        with self._lock:
            return list(self._pending)

    def find(self, name: str) -> str | None:
        normalized = name.strip().lower()
        with self._lock:
            found = normalized in self._identities or normalized in self._pending
        return normalized if found else None

    def is_pending(self, name: str) -> bool:
        with self._lock:
            return name.strip().lower() in self._pending

    def is_verified(self, address: str) -> bool:
        with self._lock:
            identities = set(self._identities)
            has_identities = bool(self._identities or self._pending)
        if not has_identities:
            return True
        address = address.lower()
        if address in identities:
            return True
        domain = address.rpartition("@")[2]
        labels = domain.split(".")
        return any(".".join(labels[index:]) in identities for index in range(len(labels)))


def identity_type(name: str) -> str:
    return "EMAIL_ADDRESS" if "@" in name else "DOMAIN"


def dkim_attributes(region: str, identity: str, pending: bool = False) -> dict:
    """Return Easy DKIM attributes: PENDING for a pending identity, else as
    SES shows them once the CNAMEs are found.

    A domain gets three tokens, fixed for the region and the domain, so a
    test can publish the CNAME records <token>._domainkey.<domain> and a
    restarted ses-local names the same ones. Email address identities
    share their domain's signing, so they get no tokens.
    """
    if identity_type(identity) != "DOMAIN":
        return {"SigningEnabled": False, "Status": "NOT_STARTED"}
    tokens = [hashlib.sha256(f"{region}/{identity}/{index}".encode()).hexdigest()[:32]
              for index in range(3)]
    return {
        "SigningEnabled": True,
        "Status": "PENDING" if pending else "SUCCESS",
        "Tokens": tokens,
        "SigningAttributesOrigin": "AWS_SES",
    }


class SesService:
    """SendEmail, GetAccount, ListEmailIdentities and GetEmailIdentity for one region."""

    def __init__(self, region: str, ledger: Ledger, quota: SendingQuota,
                 faults: FaultInjector, identities: IdentityStore):
        self.region = region
        self.ledger = ledger
        self.quota = quota
        self.faults = faults
        self.identities = identities
        self._sending_enabled = threading.Event()
        self._sending_enabled.set()
        self._validator = ParamValidator()
        self._send_email_shape = load_sesv2_model().operation_model("SendEmail").input_shape
        self._stats_lock = threading.Lock()
        self._outcomes: Counter[tuple[str, str]] = Counter()

    # Account state and statistics

    @property
    def sending_enabled(self) -> bool:
        return self._sending_enabled.is_set()

    def set_sending_enabled(self, enabled: bool) -> None:
        if enabled:
            self._sending_enabled.set()
        else:
            self._sending_enabled.clear()

    def record_outcome(self, operation: str, outcome: str) -> None:
        with self._stats_lock:
            self._outcomes[(operation, outcome)] += 1

    def stats(self) -> dict:
        with self._stats_lock:
            outcomes = dict(self._outcomes)
        by_outcome: Counter[str] = Counter()
        by_operation: dict[str, dict[str, int]] = {}
        for (operation, outcome), count in sorted(outcomes.items()):
            by_outcome[outcome] += count
            by_operation.setdefault(operation, {})[outcome] = count
        return {
            "requests": sum(outcomes.values()),
            "by_outcome": dict(sorted(by_outcome.items())),
            "by_operation": by_operation,
            "sent_last_24_hours": self.quota.sent_last_24_hours(),
        }

    # SendEmail

    def send_email(self, body: bytes) -> dict:
        """Accept one SendEmail request and return its ledger entry, or raise ApiError."""
        params = parse_json_object(body)
        content = params.get("Content")
        if isinstance(content, dict) and ("Simple" in content or "Template" in content):
            raise bad_request("only raw content is supported by ses-local")
        raw_message = self._decode_raw_data(params)
        self._validate_send_email(params, raw_message)
        if "Raw" not in params["Content"]:
            raise bad_request("Content must contain Raw, the only content type that ses-local supports.")

        destinations = self._destinations(params)
        headers = None
        if not params.get("FromEmailAddress") or not destinations:
            # Only a body without FromEmailAddress or Destination needs the raw headers.
            headers = BytesHeaderParser(policy=compat32).parsebytes(raw_message)
        senders = self._sender_addresses(params, headers)
        recipients = destinations or self._header_recipients(headers)
        if len(recipients) > MAX_RECIPIENTS:
            # NOTE: the limit is SES's, but the error code and wording are this
            # endpoint's own.
            raise message_rejected(f"Recipient count exceeds {MAX_RECIPIENTS}: {len(recipients)} recipients.")

        if not self.sending_enabled:
            raise ApiError(
                400,
                "SendingPausedException",
                f"Email sending is paused for this account in region {self.region.upper()}.",
            )
        unverified = [address for address in senders if not self.identities.is_verified(address)]
        if unverified:
            # Wording of SES's MessageRejected error for unverified senders, as quoted in users' reports.
            raise message_rejected(
                "Email address is not verified. The following identities failed "
                f"the check in region {self.region.upper()}: {', '.join(unverified)}"
            )
        self.quota.admit(max(len(recipients), 1))

        entry = {
            "region": self.region,
            "message_id": new_message_id(),
            "sha256": hashlib.sha256(raw_message).hexdigest(),
            "size": len(raw_message),
            "envelope_id": self._envelope_id(params),
            "destinations": destinations,
            "from": senders[0],
            "received_at": rfc3339_now(),
        }
        return self.ledger.append(entry, raw_message)

    @staticmethod
    def _decode_raw_data(params: dict) -> bytes | None:
        content = params.get("Content")
        raw = content.get("Raw") if isinstance(content, dict) else None
        data = raw.get("Data") if isinstance(raw, dict) else None
        if not isinstance(data, str):
            return None  # the validator reports a missing or mistyped Data
        if len(data) > MAX_RAW_MESSAGE_BASE64_BYTES:
            raise message_too_large(len(data))
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error as error:
            raise bad_request(f"Content.Raw.Data is not valid base64: {error}") from None

    def _validate_send_email(self, params: dict, raw_message: bytes | None) -> None:
        # JSON carries blobs as base64 text, but the validator expects bytes.
        checked = params
        if raw_message is not None:
            checked = dict(params)
            checked["Content"] = dict(params["Content"])
            checked["Content"]["Raw"] = dict(params["Content"]["Raw"], Data=raw_message)
        report = self._validator.validate(checked, self._send_email_shape)
        if report.has_errors():
            raise bad_request(report.generate_report())

    @staticmethod
    def _sender_addresses(params: dict, headers) -> list[str]:
        """Return the FromEmailAddress addresses, else those of the From headers.

        headers may be None when FromEmailAddress is set.
        """
        if params.get("FromEmailAddress"):
            addresses = list(parse_addresses(params["FromEmailAddress"]))
        else:
            values = headers.get_all("From") or []
            addresses = [address for _, address in getaddresses(values) if address]
        if not addresses:
            raise message_rejected(
                "The message has no sender: set FromEmailAddress or a From header in the raw message."
            )
        return addresses

    @staticmethod
    def _destinations(params: dict) -> list[str]:
        destination = params.get("Destination") or {}
        addresses = []
        for field in ("ToAddresses", "CcAddresses", "BccAddresses"):
            addresses.extend(destination.get(field) or [])
        return addresses

    @staticmethod
    def _header_recipients(headers) -> list[str]:
        values = []
        for field in ("To", "Cc", "Bcc"):
            values.extend(headers.get_all(field) or [])
        return [address for _, address in getaddresses(values) if address]

    @staticmethod
    def _envelope_id(params: dict) -> str | None:
        for tag in params.get("EmailTags") or []:
            if tag.get("Name") == ENVELOPE_ID_TAG:
                return tag.get("Value")
        return None

    # GetAccount

    def get_account(self) -> dict:
        fault_kind = self.faults.active_kind()
        quota = self.quota.snapshot()
        sent_last_24_hours = quota["sent_last_24_hours"]
        if fault_kind == "daily_quota" and quota["max_24_hour_send"] >= 0:
            sent_last_24_hours = max(sent_last_24_hours, quota["max_24_hour_send"])
        sending_enabled = self.sending_enabled and fault_kind not in ("sending_paused", "account_suspended")
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "SHUTDOWN" if fault_kind == "account_suspended" else "HEALTHY",
            "ProductionAccessEnabled": True,
            "SendQuota": {
                "Max24HourSend": quota["max_24_hour_send"],
                "MaxSendRate": quota["max_send_rate"],
                "SentLast24Hours": float(sent_last_24_hours),
            },
            "SendingEnabled": sending_enabled,
            "SuppressionAttributes": {"SuppressedReasons": []},
            "Details": {
                "MailType": "TRANSACTIONAL",
                "ContactLanguage": "EN",
                "UseCaseDescription": "Local SES v2 endpoint for Ferry tests.",
                "ReviewDetails": {"Status": "GRANTED"},
            },
        }

    # Identities

    def list_email_identities(self, page_size, next_token) -> dict:
        pending = set(self.identities.pending_names())
        names = sorted(self.identities.names() + list(pending))
        start = 0
        if next_token:
            if not str(next_token).isdigit() or int(next_token) > len(names):
                raise bad_request(f"Invalid NextToken: {next_token!r}.")
            start = int(next_token)
        if page_size is None:
            page_size = MAX_PAGE_SIZE
        try:
            page_size = int(page_size)
        except (TypeError, ValueError):
            raise bad_request(f"PageSize must be an integer, got {page_size!r}.") from None
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise bad_request(f"PageSize must be from 0 to {MAX_PAGE_SIZE}, got {page_size}.")
        page = names[start:start + page_size]
        response = {
            "EmailIdentities": [
                {
                    "IdentityType": identity_type(name),
                    "IdentityName": name,
                    "SendingEnabled": True,
                    "VerificationStatus": "PENDING" if name in pending else "SUCCESS",
                }
                for name in page
            ]
        }
        if start + len(page) < len(names):
            response["NextToken"] = str(start + len(page))
        return response

    def get_email_identity(self, name: str) -> dict:
        identity = self.identities.find(name)
        if identity is None:
            raise not_found(f"Email identity {name} does not exist in region {self.region}.")
        pending = self.identities.is_pending(identity)
        return {
            "IdentityType": identity_type(identity),
            "FeedbackForwardingStatus": True,
            "VerifiedForSendingStatus": not pending,
            "VerificationStatus": "PENDING" if pending else "SUCCESS",
            "DkimAttributes": dkim_attributes(self.region, identity, pending),
            "Policies": {},
            "Tags": [],
        }
