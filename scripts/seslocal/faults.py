"""Injected faults set through POST /_ferry/faults.

The scripts/ses-local docstring lists each fault and the response it produces.
"""

import random
import threading
import time
from dataclasses import dataclass, field

from .errors import ApiError
from .quota import DAILY_QUOTA_EXCEEDED, MAX_SEND_RATE_EXCEEDED

SEND_EMAIL = "SendEmail"
GET_ACCOUNT = "GetAccount"
LIST_EMAIL_IDENTITIES = "ListEmailIdentities"
GET_EMAIL_IDENTITY = "GetEmailIdentity"
OPERATIONS = (SEND_EMAIL, GET_ACCOUNT, LIST_EMAIL_IDENTITIES, GET_EMAIL_IDENTITY)

# Fault kinds that respond with an error.
ERROR_FAULTS = (
    "throttle",
    "daily_quota",
    "error",
    "sending_paused",
    "account_suspended",
    "message_rejected",
)
# Fault kinds that break the connection instead of responding.
CONNECTION_FAULTS = ("hang", "reset", "drop_response")
FAULT_KINDS = ERROR_FAULTS + CONNECTION_FAULTS

# Operations a fault applies to unless the request names them. The account
# faults also change GetAccount's response without applying to it (see
# FaultInjector.active_kind).
DEFAULT_OPERATIONS = {
    "throttle": (SEND_EMAIL,),
    "daily_quota": (SEND_EMAIL,),
    "error": (SEND_EMAIL, GET_ACCOUNT),
    "sending_paused": (SEND_EMAIL,),
    "account_suspended": (SEND_EMAIL,),
    "message_rejected": (SEND_EMAIL,),
    "hang": (SEND_EMAIL, GET_ACCOUNT),
    "reset": (SEND_EMAIL, GET_ACCOUNT),
    "drop_response": (SEND_EMAIL,),
}

# Codes and messages for HTTP 500 and 503, from AWS's list of errors common
# to all actions.
SERVER_ERRORS = {
    500: ("InternalFailure", "The request processing has failed because of an unknown error, exception or failure."),
    503: ("ServiceUnavailable", "The request has failed due to a temporary failure of the server."),
}

FAULT_FIELDS = {"fault", "probability", "count", "seconds", "status", "code", "message", "operations"}


class FaultSpecError(ValueError):
    """A POST /_ferry/faults body that is not a valid fault."""


@dataclass
class Fault:
    kind: str
    probability: float = 1.0
    count: int | None = None
    seconds: float | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None
    operations: tuple[str, ...] = ()
    set_at: float = field(default_factory=time.time)
    matched: int = 0

    @property
    def expires_at(self) -> float | None:
        return None if self.seconds is None else self.set_at + self.seconds

    def is_expired(self, now: float) -> bool:
        if self.count is not None and self.matched >= self.count:
            return True
        return self.expires_at is not None and now >= self.expires_at

    def describe(self) -> dict:
        return {
            "fault": self.kind,
            "probability": self.probability,
            "count": self.count,
            "seconds": self.seconds,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "operations": list(self.operations),
            "matched": self.matched,
            "remaining": None if self.count is None else max(self.count - self.matched, 0),
            "expires_at": self.expires_at,
        }

    def error(self, region: str) -> ApiError:
        """Return the error response for an error fault, applying status/code/message overrides."""
        status, code, message = self._default_error(region)
        return ApiError(self.status or status, self.code or code, self.message or message)

    def _default_error(self, region: str) -> tuple[int, str, str]:
        region_label = region.upper()
        if self.kind == "throttle":
            return 429, "TooManyRequestsException", MAX_SEND_RATE_EXCEEDED
        if self.kind == "daily_quota":
            return 429, "TooManyRequestsException", DAILY_QUOTA_EXCEEDED
        if self.kind == "sending_paused":
            return 400, "SendingPausedException", f"Email sending is paused for this account in region {region_label}."
        if self.kind == "account_suspended":
            return (
                400,
                "AccountSuspendedException",
                f"Email sending is permanently restricted for this account in region {region_label}.",
            )
        if self.kind == "message_rejected":
            return 400, "MessageRejected", "Message rejected: virus detected"
        if self.kind == "error":
            status = self.status or 503
            if status in SERVER_ERRORS:
                code, message = SERVER_ERRORS[status]
            elif status >= 500:
                code, message = "InternalFailure", f"Injected HTTP {status} server error."
            else:
                code, message = "BadRequestException", f"Injected HTTP {status} client error."
            return status, code, message
        raise ValueError(f"fault '{self.kind}' produces no error response")


def parse_fault(spec: object) -> Fault:
    """Build a Fault from a POST /_ferry/faults body, raising FaultSpecError if invalid."""
    if not isinstance(spec, dict):
        raise FaultSpecError("the body must be a JSON object such as {\"fault\": \"throttle\"}")
    unknown = sorted(set(spec) - FAULT_FIELDS)
    if unknown:
        raise FaultSpecError(f"unknown fields {unknown}; valid fields are {sorted(FAULT_FIELDS)}")
    kind = spec.get("fault")
    if kind not in FAULT_KINDS:
        raise FaultSpecError(f"invalid fault {kind!r}; valid faults are {list(FAULT_KINDS)}")

    probability = spec.get("probability", 1.0)
    if probability is None:
        probability = 1.0
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        raise FaultSpecError(f"probability must be a number from 0 to 1, got {probability!r}")

    count = spec.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise FaultSpecError(f"count must be a positive integer or null, got {count!r}")

    seconds = spec.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
        raise FaultSpecError(f"seconds must be a positive number or null, got {seconds!r}")

    status = spec.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599):
        raise FaultSpecError(f"status must be an HTTP error status from 400 to 599, got {status!r}")

    for name in ("status", "code", "message"):
        value = spec.get(name)
        if value is None:
            continue
        if kind in CONNECTION_FAULTS:
            raise FaultSpecError(f"{name} applies only to faults that respond with an error, not {kind!r}")
        if name != "status" and (not isinstance(value, str) or not value):
            raise FaultSpecError(f"{name} must be a non-empty string, got {value!r}")

    operations = spec.get("operations")
    if operations is None:
        operations = DEFAULT_OPERATIONS[kind]
    elif not isinstance(operations, list) or not operations or any(op not in OPERATIONS for op in operations):
        raise FaultSpecError(f"operations must be a non-empty list drawn from {list(OPERATIONS)}, got {operations!r}")
    if kind == "drop_response" and tuple(operations) != (SEND_EMAIL,):
        raise FaultSpecError("drop_response applies only to SendEmail")

    return Fault(
        kind=kind,
        probability=float(probability),
        count=count,
        seconds=None if seconds is None else float(seconds),
        status=status,
        code=spec.get("code"),
        message=spec.get("message"),
        operations=tuple(operations),
    )


class FaultInjector:
    """The one active fault, if any, shared by all request threads.

    A call "matches" when the fault applies to its operation and the
    probability draw selects it. The fault is removed once `count` calls have
    matched or `seconds` have passed since it was set.
    """

    def __init__(self, random_source: random.Random | None = None):
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._random = random_source or random.Random()
        # Set to release every hanging request; replaced after each release.
        self._hang_release = threading.Event()

    def set(self, fault: Fault) -> None:
        with self._lock:
            self._fault = fault

    def clear(self) -> None:
        """Remove the active fault and release requests held by a hang fault."""
        with self._lock:
            self._fault = None
            self._hang_release.set()
            self._hang_release = threading.Event()

    def describe(self) -> dict | None:
        with self._lock:
            fault = self._current_locked()
            return None if fault is None else fault.describe()

    def match(self, operation: str) -> tuple[Fault, threading.Event] | None:
        """Return the fault to apply to this call and the hang release event, or None."""
        with self._lock:
            fault = self._current_locked()
            if fault is None or operation not in fault.operations:
                return None
            if fault.probability < 1 and self._random.random() >= fault.probability:
                return None
            fault.matched += 1
            release = self._hang_release
            if fault.is_expired(time.time()):
                self._fault = None
            return fault, release

    def active_kind(self) -> str | None:
        """Return the kind of the active fault without counting a match."""
        with self._lock:
            fault = self._current_locked()
            return None if fault is None or fault.probability == 0 else fault.kind

    def _current_locked(self) -> Fault | None:
        if self._fault is not None and self._fault.is_expired(time.time()):
            self._fault = None
        return self._fault
