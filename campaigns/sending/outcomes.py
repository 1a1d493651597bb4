"""What an ESP answer or error means for a delivery: sent, retry, wait, failed or uncertain."""

import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial

import requests
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.conf import settings
from django.utils import timezone

# --- What an ESP answer means ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """sent | retry (transient) | throttled (429) | failed (permanent) | uncertain."""

    kind: str
    reason: str = ""
    delay: float = 0.0
    message_id: str = ""
    seconds: float = 0.0  # how long the ESP took to accept it (a sent message)


def _retry_after(response) -> float:
    value = (response.headers.get("Retry-After") or "").strip() if response is not None else ""
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
            except (TypeError, ValueError):
                pass
    return float(settings.SEND_RETRY_AFTER_DEFAULT_SECONDS)


def _esp_reason(exc: AnymailError) -> str:
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("Message"):
            code = body.get("ErrorCode")
            return f"{body['Message']}" + (f" (ESP error {code})" if code else "")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
        text = (getattr(response, "text", "") or "").strip()
        if text:
            return f"HTTP {response.status_code}: {text[:300]}"
        return f"HTTP {response.status_code}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _nothing_left(exc: BaseException) -> bool:
    """True when the request certainly never reached the ESP (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc.args) + repr(exc.__cause__)
        return any(
            marker in text
            for marker in ("NewConnectionError", "NameResolutionError", "Connection refused")
        )
    return isinstance(exc, ConnectionRefusedError | smtplib.SMTPConnectError)


def classify(exc: BaseException) -> Outcome:
    """Turn an exception from the ESP call into what happens to the delivery.

    Retrying is only safe when the ESP certainly did not take the message:
    a refused connection, 429, 408, 500, 502, 503. An answer lost after the
    request left (a read timeout, a dropped connection, 504) may hide an
    accepted message: that is `uncertain`, never retried by the machine.
    """
    if isinstance(exc, AnymailRecipientsRefused):
        return Outcome("failed", _esp_reason(exc))
    if isinstance(exc, AnymailError | ValueError) and not isinstance(exc, AnymailAPIError):
        # An invalid address, an unsupported feature, a bad header: refused while the
        # backend built the request, before anything left (anymail wraps network errors
        # in AnymailAPIError, handled below).
        return Outcome("failed", f"The message could not be sent as built: {exc}")
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        if status == 429:
            return Outcome("throttled", "ESP rate limit (429)", _retry_after(exc.response))
        if status in (408, 500, 502, 503):
            return Outcome("retry", _esp_reason(exc))
        if status == 504:
            return Outcome("uncertain", f"ESP gateway timeout (504): {_esp_reason(exc)}")
        if status is not None and 400 <= status < 500:
            return Outcome("failed", _esp_reason(exc))
        if status is not None:
            return Outcome("uncertain", f"Unexpected ESP answer: {_esp_reason(exc)}")
        if _nothing_left(exc):
            return Outcome("retry", f"No connection to the ESP: {type(exc).__name__}")
        return Outcome("uncertain", f"The ESP's answer was lost: {_esp_reason(exc)}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return Outcome("failed", f"Recipient refused: {list(exc.recipients.values())[:1]}")
    if isinstance(exc, smtplib.SMTPResponseException):
        text = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
        if exc.smtp_code == 421 or 400 <= exc.smtp_code < 500:
            return Outcome("retry", text)
        return Outcome("failed", text)
    if _nothing_left(exc):
        return Outcome("retry", f"No connection to the mail server: {type(exc).__name__}")
    return Outcome("uncertain", f"Unexpected error while sending: {type(exc).__name__}: {exc}")


def backoff(attempts: int) -> float:
    base = settings.SEND_RETRY_BASE_SECONDS * (2 ** max(0, attempts - 1))
    return min(float(settings.SEND_RETRY_MAX_SECONDS), base)


# --- What an outcome writes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """The write an outcome makes to its delivery: applied only while the row is `sending`.

    `sent` also applies to an `uncertain` row (the sweeper gave up on it just
    before the answer was recorded; the answer is the evidence). Columns not
    named here keep their value; the lease always ends.
    """

    delivery_id: int
    status: str
    at: datetime
    error: str = ""
    message_id: str = ""
    next_attempt_at: datetime | None = None
    attempts_delta: int = 0  # -1: a 429's attempt is not counted
    # The lease of the claim that sent it: a `sending` row is written only under that
    # claim (None: any). A row re-claimed since is another worker's to record.
    lease_until: datetime | None = None


def change_for(delivery, outcome: Outcome, now: datetime) -> Change:
    """What `outcome` of the ESP call for `delivery` (as claimed) writes to it."""
    from campaigns.models import Delivery

    status = Delivery.Status
    kind = outcome.kind
    attempts = delivery.attempts
    change = partial(Change, delivery.pk, lease_until=delivery.lease_until)
    if kind == "sent":
        return change(status.SENT, now, message_id=outcome.message_id[:255])
    if kind == "throttled":
        not_before = now + timedelta(seconds=outcome.delay)
        return change(
            status.QUEUED, now, outcome.reason, next_attempt_at=not_before, attempts_delta=-1
        )
    if kind == "retry" and attempts < settings.SEND_MAX_ATTEMPTS:
        not_before = now + timedelta(seconds=backoff(attempts))
        return change(status.QUEUED, now, outcome.reason, next_attempt_at=not_before)
    if kind == "retry":
        reason = f"Gave up after {attempts} attempts: {outcome.reason}"
        return change(status.FAILED, now, reason)
    if kind == "failed":
        return change(status.FAILED, now, outcome.reason)
    return change(status.UNCERTAIN, now, outcome.reason)
