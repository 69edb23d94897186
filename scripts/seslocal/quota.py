"""Sending quota: maximum send rate (token bucket) and 24-hour sending quota."""

import threading
import time
from collections import deque

from .errors import ApiError

SECONDS_PER_DAY = 24 * 60 * 60

# SES reports both quota errors as throttling errors with these messages
# (Amazon SES developer guide, "Errors related to the sending quotas for your
# Amazon SES account"). TooManyRequestsException is the throttling error that
# the SES v2 API model declares for SendEmail.
MAX_SEND_RATE_EXCEEDED = "Maximum sending rate exceeded."
DAILY_QUOTA_EXCEEDED = "Daily message quota exceeded."


def throttled(message: str) -> ApiError:
    return ApiError(429, "TooManyRequestsException", message)


class SendingQuota:
    """Per-second and per-24-hour sending limits, counted in recipients as SES does.

    The rate limit is a token bucket that refills max_send_rate tokens per
    second and contains at most one second's worth. A call passes while at least
    one token is left and then takes one token per recipient, so the bucket
    can go negative. The 24-hour quota likewise passes a call while fewer than
    max_24_hour_send recipients were sent in the last 24 hours. SES lets a
    multi-recipient call through the same way and rejects later calls until
    quota is free again. The rate limit is enforced only while enforce_rate is
    true. The 24-hour quota is always enforced, and a max_24_hour_send of -1
    means unlimited, as in SES.
    """

    def __init__(self, max_send_rate: float, max_24_hour_send: float, enforce_rate: bool):
        self._lock = threading.Lock()
        self.max_send_rate = float(max_send_rate)
        self.max_24_hour_send = float(max_24_hour_send)
        self.enforce_rate = enforce_rate
        self._tokens = self.max_send_rate
        self._refilled_at = time.monotonic()
        self._sent: deque[tuple[float, int]] = deque()  # (monotonic time, recipients)
        self._sent_total = 0  # sum of recipients in self._sent

    def configure(self, max_send_rate=None, max_24_hour_send=None, enforce_rate=None) -> None:
        with self._lock:
            if max_send_rate is not None:
                self.max_send_rate = float(max_send_rate)
                self._tokens = min(self._tokens, self.max_send_rate)
            if max_24_hour_send is not None:
                self.max_24_hour_send = float(max_24_hour_send)
            if enforce_rate is not None:
                self.enforce_rate = bool(enforce_rate)
                if self.enforce_rate:
                    self._tokens = self.max_send_rate
                    self._refilled_at = time.monotonic()

    def sent_last_24_hours(self) -> int:
        with self._lock:
            return self._sent_last_24_hours_locked(time.monotonic())

    def admit(self, recipients: int) -> None:
        """Take quota for one send of `recipients` recipients, or raise the SES throttling error."""
        now = time.monotonic()
        with self._lock:
            if self.max_24_hour_send >= 0:
                if self._sent_last_24_hours_locked(now) >= self.max_24_hour_send:
                    raise throttled(DAILY_QUOTA_EXCEEDED)
            if self.enforce_rate:
                self._refill_locked(now)
                if self._tokens < 1:
                    raise throttled(MAX_SEND_RATE_EXCEEDED)
                self._tokens -= recipients
            self._sent.append((now, recipients))
            self._sent_total += recipients

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "max_send_rate": self.max_send_rate,
                "max_24_hour_send": self.max_24_hour_send,
                "enforce_rate": self.enforce_rate,
                "sent_last_24_hours": self._sent_last_24_hours_locked(time.monotonic()),
            }

    def _refill_locked(self, now: float) -> None:
        elapsed = now - self._refilled_at
        self._refilled_at = now
        self._tokens = min(self.max_send_rate, self._tokens + elapsed * self.max_send_rate)

    def _sent_last_24_hours_locked(self, now: float) -> int:
        while self._sent and self._sent[0][0] <= now - SECONDS_PER_DAY:
            _, recipients = self._sent.popleft()
            self._sent_total -= recipients
        return self._sent_total
