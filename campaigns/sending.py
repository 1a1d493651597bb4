"""The worker side of sending: claim deliveries, send them through the ESP, record the answer.

The one door to the ESP for apologies. The database is the source of truth:

- A job covers an id range of one campaign's deliveries. It claims due, queued
  rows with one conditional UPDATE (PostgreSQL: FOR UPDATE SKIP LOCKED), which
  sets them `sending` with a lease. Two jobs for one range (a re-enqueue, a
  duplicate) claim disjoint rows; a claimed row is never claimed again.
- Threads send the claimed rows (SEND_CONCURRENCY ESP calls in flight) and
  record each answer with an UPDATE … WHERE status = 'sending'.
- A row whose ESP answer was lost (a killed worker, a timeout after the request
  left) is never sent again by the machine: the sweeper marks it `sent` when
  there is evidence the ESP took it, else `uncertain`, for a person to decide.

See docs/sending.md for the guarantee and the error handling.
"""

import logging
import math
import queue
import smtplib
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid, parsedate_to_datetime

import requests
from anymail.backends.base import AnymailBaseBackend
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.db import connection, connections, transaction
from django.db.models import Min, Q
from django.utils import timezone

from campaigns.mail import SandboxBackend
from campaigns.models import Campaign, Delivery, OutboxMessage, Suppression
from campaigns.rendering import RenderError, choose_locale, render_context, render_version
from incidents import audit
from incidents.actors import Actor
from incidents.models import SendLogEntry

log = logging.getLogger(__name__)

SENDER = Actor.system("sender")
SWEEPER = Actor.system("sweeper")
Status = Delivery.Status


# --- Batches -------------------------------------------------------------------------------


def batch_ranges(
    campaign_id: int,
    batch_size: int,
    *,
    min_id: int | None = None,
    due_by: datetime | None = None,
) -> list[tuple[int, int]]:
    """(first id, last id) of each run of `batch_size` queued deliveries, in id order.

    `due_by`: only deliveries due by then (no next attempt time, or an earlier one).
    """
    where = ["campaign_id = %s", "status = %s"]
    params: list = [campaign_id, Status.QUEUED]
    if min_id is not None:
        where.append("id >= %s")
        params.append(min_id)
    if due_by is not None:
        where.append("(next_attempt_at IS NULL OR next_attempt_at <= %s)")
        params.append(due_by)
    sql = f"""
        SELECT MIN(id), MAX(id) FROM (
            SELECT id, (ROW_NUMBER() OVER (ORDER BY id) - 1) / %s AS grp
            FROM campaigns_delivery WHERE {" AND ".join(where)}
        ) numbered GROUP BY grp ORDER BY grp
    """  # noqa: S608 (constant fragments; values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, [batch_size, *params])
        return [(first, last) for first, last in cursor.fetchall()]


# --- The global rate limit -----------------------------------------------------------------

# A token bucket per campaign, refilled at `rate` tokens/s, holding at most `capacity`.
# Returns 0 when a token was taken, else the milliseconds to wait. A hold key (set
# after an ESP 429) makes every worker wait until it expires.
_BUCKET_LUA = """
local hold = redis.call('PTTL', KEYS[2])
if hold > 0 then return hold end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
    tokens = capacity
    ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return wait
"""


def _capacity(rate: int) -> int:
    return max(1, math.ceil(rate / 10))  # bursts of at most a tenth of a second


class _LocalLimiter:
    """The same bucket in this process, for the embedded mode (one process sends)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}
        self._holds: dict[str, float] = {}

    def take(self, campaign_id: int, rate: int, mailer: str) -> float:
        now = time.monotonic()
        with self._lock:
            held = self._holds.get(mailer, 0) - now
            if held > 0:
                return held
            capacity = _capacity(rate)
            tokens, ts = self._buckets.get(campaign_id, (capacity, now))
            tokens = min(capacity, tokens + (now - ts) * rate)
            if tokens >= 1:
                self._buckets[campaign_id] = (tokens - 1, now)
                return 0
            self._buckets[campaign_id] = (tokens, now)
            return (1 - tokens) / rate

    def hold(self, mailer: str, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            self._holds[mailer] = max(self._holds.get(mailer, 0), until)


class _RedisLimiter:
    """One bucket per campaign in Redis, shared by every worker process."""

    def __init__(self):
        import django_rq

        self._redis = django_rq.get_connection("send")
        self._script = self._redis.register_script(_BUCKET_LUA)

    def _keys(self, campaign_id: int, mailer: str) -> list[str]:
        prefix = settings.SEND_REDIS_PREFIX
        return [f"{prefix}:bucket:{campaign_id}", f"{prefix}:hold:{mailer}"]

    def take(self, campaign_id: int, rate: int, mailer: str) -> float:
        wait_ms = self._script(keys=self._keys(campaign_id, mailer), args=[rate, _capacity(rate)])
        return int(wait_ms) / 1000

    def hold(self, mailer: str, seconds: float) -> None:
        key = self._keys(0, mailer)[1]
        ms = max(1, int(seconds * 1000))
        current = self._redis.pttl(key)
        if current is None or current < ms:
            self._redis.set(key, "1", px=ms)


_local_limiter = _LocalLimiter()


def limiter():
    return _RedisLimiter() if settings.REDIS_URL else _local_limiter


# --- What an ESP answer means ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """sent | retry (transient) | throttled (429) | failed (permanent) | uncertain."""

    kind: str
    reason: str = ""
    delay: float = 0.0
    message_id: str = ""


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


# --- Claiming --------------------------------------------------------------------------------


def claim(campaign_id: int, first_id: int, last_id: int, limit: int) -> list[int]:
    """Set up to `limit` due, queued deliveries of the range `sending` with a lease; their ids.

    Committed before anything is sent: once a row is `sending`, no other job
    will take it, and the sweeper alone decides about it if this worker dies.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.SEND_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        sql = """
            WITH picked AS (
                SELECT id FROM campaigns_delivery
                WHERE campaign_id = %s AND id BETWEEN %s AND %s AND status = 'queued'
                  AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
                ORDER BY id LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE campaigns_delivery d
            SET status = 'sending', attempts = d.attempts + 1, lease_until = %s, updated_at = %s
            FROM picked WHERE d.id = picked.id
            RETURNING d.id
        """
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [campaign_id, first_id, last_id, now, limit, lease, now])
            ids = sorted(row[0] for row in cursor.fetchall())
    else:
        # SQLite: transactions are IMMEDIATE, so nobody writes between the read and the update.
        with transaction.atomic():
            ids = list(
                Delivery.objects.filter(
                    campaign_id=campaign_id,
                    id__gte=first_id,
                    id__lte=last_id,
                    status=Status.QUEUED,
                )
                .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                .order_by("id")
                .values_list("id", flat=True)[:limit]
            )
            if ids:
                from django.db.models import F

                Delivery.objects.filter(id__in=ids, status=Status.QUEUED).update(
                    status=Status.SENDING,
                    attempts=F("attempts") + 1,
                    lease_until=lease,
                    updated_at=now,
                )
    if ids:
        # Outside the claim's transaction, so it never waits on a campaign lock while
        # holding delivery locks. At most every second: it only tells the sweeper "alive".
        Campaign.objects.filter(pk=campaign_id).filter(
            Q(last_claim_at__isnull=True) | Q(last_claim_at__lt=now - timedelta(seconds=1))
        ).update(last_claim_at=now)
    return ids


def release(ids: list[int], *, not_before: datetime | None = None) -> int:
    """Claimed rows that were never handed to the ESP go back to the queue, attempt uncounted."""
    if not ids:
        return 0
    from django.db.models import F

    return Delivery.objects.filter(id__in=ids, status=Status.SENDING).update(
        status=Status.QUEUED,
        attempts=F("attempts") - 1,
        lease_until=None,
        next_attempt_at=not_before,
        updated_at=timezone.now(),
    )


# --- Sending one batch ------------------------------------------------------------------------


def _campaign(campaign_id: int) -> Campaign | None:
    return (
        Campaign.objects.select_related("incident", "version__message__incident")
        .filter(pk=campaign_id)
        .first()
    )


def _status(campaign_id: int) -> str | None:
    return Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()


def send_batch(campaign_id: int, first_id: int, last_id: int) -> dict:
    """Send the due, queued deliveries of one id range. Safe to run twice, or concurrently.

    Returns counts, for logs and tests. A campaign that is not running sends
    nothing: its rows stay queued, and resume enqueues them again.
    """
    campaign = _campaign(campaign_id)
    if campaign is None or campaign.status != Campaign.Status.RUNNING:
        return {"skipped": 1}
    if campaign.version.compute_hash() != campaign.content_hash:
        from campaigns.services.sending import campaign_auto_pause

        campaign_auto_pause(
            campaign_id=campaign_id,
            reason="The message text no longer matches the approved text. Nothing more was sent.",
        )
        return {"skipped": 1}
    run = _BatchRun(campaign, first_id, last_id)
    try:
        run.run()
    finally:
        complete_if_done(campaign_id)
    return run.counts


class _BatchRun:
    """One job's work: claim chunks of its range and send them until none is due."""

    def __init__(self, campaign: Campaign, first_id: int, last_id: int):
        self.campaign = campaign
        self.version = campaign.version
        self.incident = campaign.incident
        self.first_id, self.last_id = first_id, last_id
        self.limiter = limiter()
        self.concurrency = max(1, settings.SEND_CONCURRENCY)
        # A chunk is a few seconds of sending at the campaign's rate, so leases stay short.
        self.chunk_size = min(
            campaign.batch_size, max(self.concurrency * 4, campaign.rate_limit * 5)
        )
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.window: deque[bool] = deque(maxlen=max(1, settings.SEND_ERROR_WINDOW))
        self.stop = threading.Event()
        self.stop_reason = ""  # "paused", "cancelled", "throttled", "auto_pause"
        self.auto_pause_reason = ""
        self.hold_until: datetime | None = None
        self.last_check = time.monotonic()

    # -- control --
    def _count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + n

    def _still_running(self) -> bool:
        status = _status(self.campaign.pk)
        if status != Campaign.Status.RUNNING:
            self.stop_reason = self.stop_reason or str(status)
            self.stop.set()
            return False
        return True

    def _wait(self, seconds: float) -> bool:
        """Sleep, re-checking the campaign; False when it stopped running meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, settings.SEND_CONTROL_CHECK_SECONDS))
            if not self._still_running():
                return False
        return True

    def run(self) -> None:
        while not self.stop.is_set() and self._still_running():
            ids = claim(self.campaign.pk, self.first_id, self.last_id, self.chunk_size)
            if ids:
                self._send_chunk(ids)
                if self.auto_pause_reason:
                    from campaigns.services.sending import campaign_auto_pause

                    campaign_auto_pause(campaign_id=self.campaign.pk, reason=self.auto_pause_reason)
                    return
                if self.stop.is_set() and self.stop_reason != "throttled":
                    return
                self.stop.clear()
                self.stop_reason = ""
                continue
            wait = self._next_due_in()
            if wait is None or wait > settings.SEND_MAX_INLINE_WAIT_SECONDS:
                return  # done, or the rest waits long enough for the sweeper to pick it up
            if not self._wait(max(wait, 0.05)):
                return

    def _next_due_in(self) -> float | None:
        """Seconds until the range's next queued delivery is due; None when none is queued."""
        rows = Delivery.objects.filter(
            campaign_id=self.campaign.pk,
            id__gte=self.first_id,
            id__lte=self.last_id,
            status=Status.QUEUED,
        )
        if not rows.exists():
            return None
        if rows.filter(next_attempt_at__isnull=True).exists():
            return 0.05  # due now, but another worker holds it locked; look again shortly
        earliest = rows.aggregate(at=Min("next_attempt_at"))["at"]
        return max(0.0, (earliest - timezone.now()).total_seconds())

    # -- a chunk --
    def _send_chunk(self, ids: list[int]) -> None:
        deliveries = list(
            Delivery.objects.filter(id__in=ids, status=Status.SENDING)
            .select_related("person")
            .order_by("id")
        )
        deliveries = self._drop_unsendable(deliveries)
        work: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        for delivery in deliveries:
            work.put(delivery)
        unsent: list[int] = []
        threads = [
            threading.Thread(target=self._thread, args=(work, unsent), daemon=True)
            for _ in range(min(self.concurrency, len(deliveries)))
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.05)
            if time.monotonic() - self.last_check >= settings.SEND_CONTROL_CHECK_SECONDS:
                self.last_check = time.monotonic()
                self._still_running()
        while not work.empty():
            unsent.append(work.get().pk)
        if unsent:
            released = release(unsent, not_before=self.hold_until)
            self._count("released", released)
            if _status(self.campaign.pk) == Campaign.Status.CANCELLED:
                # Cancel ran before this release and could not see these rows as queued.
                Delivery.objects.filter(id__in=unsent, status=Status.QUEUED).update(
                    status=Status.CANCELLED, updated_at=timezone.now()
                )

    def _drop_unsendable(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Suppressed since launch: `suppressed`. Removed from the list: `cancelled`."""
        now = timezone.now()
        removed = [d.pk for d in deliveries if d.person.removed_at is not None]
        suppressed = set(
            Suppression.objects.filter(
                address__in=[d.person.address for d in deliveries]
            ).values_list("address", flat=True)
        )
        suppressed_ids = [
            d.pk for d in deliveries if d.person.address in suppressed and d.pk not in removed
        ]
        if removed:
            Delivery.objects.filter(id__in=removed, status=Status.SENDING).update(
                status=Status.CANCELLED,
                error="Removed from the affected list before it was sent.",
                lease_until=None,
                updated_at=now,
            )
            self._count("cancelled", len(removed))
        if suppressed_ids:
            Delivery.objects.filter(id__in=suppressed_ids, status=Status.SENDING).update(
                status=Status.SUPPRESSED,
                error="Suppressed before it was sent.",
                lease_until=None,
                updated_at=now,
            )
            self._count("suppressed", len(suppressed_ids))
        skip = set(removed) | set(suppressed_ids)
        return [d for d in deliveries if d.pk not in skip]

    # -- a sending thread --
    def _thread(self, work: queue.SimpleQueue, unsent: list[int]) -> None:
        try:
            backend = mailers[self.campaign.mailer]
            backend.open()
        except Exception as exc:
            log.exception("mailer %r could not be opened", self.campaign.mailer)
            with self.lock:
                self.auto_pause_reason = self.auto_pause_reason or (
                    f"Paused automatically: the mailer “{self.campaign.mailer}” could not be "
                    f"opened ({type(exc).__name__}: {exc})."
                )
            self.stop.set()
            connections.close_all()
            return
        try:
            while not self.stop.is_set():
                try:
                    delivery = work.get_nowait()
                except queue.Empty:
                    break
                if not self._take_token() or not self._lease_holds(delivery):
                    unsent.append(delivery.pk)
                    continue
                try:
                    outcome = self._send_one(backend, delivery)
                except Exception as exc:  # a bug of ours, not the ESP's answer
                    log.exception("delivery %s: unexpected error", delivery.pk)
                    outcome = Outcome("uncertain", f"{type(exc).__name__}: {exc}")
                self._record(delivery, outcome)
        finally:
            try:
                backend.close()
            finally:
                connections.close_all()  # this thread's own database connection

    def _take_token(self) -> bool:
        while not self.stop.is_set():
            wait = self.limiter.take(
                self.campaign.pk, self.campaign.rate_limit, self.campaign.mailer
            )
            if wait <= 0:
                return True
            self.stop.wait(wait)
        return False

    def _lease_holds(self, delivery: Delivery) -> bool:
        # Never start an ESP call the sweeper could outrun: half the lease must be left.
        margin = timedelta(seconds=settings.SEND_LEASE_SECONDS / 2)
        return delivery.lease_until is not None and timezone.now() + margin < delivery.lease_until

    def build(self, backend, delivery: Delivery) -> EmailMultiAlternatives:
        person = delivery.person
        locale, _ = choose_locale(
            self.version.content, delivery.locale or person.locale, self.version.fallback_locale
        )
        context = render_context(
            person=person,
            incident=self.incident,
            verification_code=delivery.verification_code,
            locale=locale,
        )
        rendered = render_version(
            version=self.version, person=person, locale=locale, context=context
        )
        reference = self.incident.reference
        headers = {"X-Amends-Delivery": str(delivery.pk), "X-Amends-Incident": reference}
        if not isinstance(backend, AnymailBaseBackend | SandboxBackend):
            # SMTP and the like: our own Message-ID is the id we record.
            headers["Message-ID"] = make_msgid(idstring=f"amends-{delivery.pk}")
        message = EmailMultiAlternatives(
            subject=rendered.subject,
            body=rendered.text,
            from_email=rendered.from_email,
            to=[delivery.address],
            reply_to=[rendered.reply_to] if rendered.reply_to else None,
            headers=headers,
        )
        if rendered.html:
            message.attach_alternative(rendered.html, "text/html")
        message.tags = [reference]
        message.metadata = {
            "delivery_id": str(delivery.pk),
            "incident": reference,
            "campaign_id": str(self.campaign.pk),
        }
        return message

    def _send_one(self, backend, delivery: Delivery) -> Outcome:
        try:
            message = self.build(backend, delivery)
        except (RenderError, ValueError) as exc:
            return Outcome("failed", f"The message could not be built: {exc}")
        try:
            backend.send_messages([message])
        except Exception as exc:
            return classify(exc)
        status = getattr(message, "anymail_status", None)
        message_id = (
            status.message_id if status is not None else None
        ) or message.extra_headers.get("Message-ID", "")
        if not isinstance(message_id, str):  # several ids: one To, so never expected
            message_id = ""
        return Outcome("sent", message_id=message_id)

    def _record(self, delivery: Delivery, outcome: Outcome) -> None:
        now = timezone.now()
        mine = Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING)
        kind = outcome.kind
        if kind == "sent":
            # `uncertain` too: the sweeper may have given up on this row just before.
            Delivery.objects.filter(
                pk=delivery.pk, status__in=[Status.SENDING, Status.UNCERTAIN]
            ).update(
                status=Status.SENT,
                esp_message_id=outcome.message_id[:255],
                sent_at=now,
                lease_until=None,
                next_attempt_at=None,
                error="",
                updated_at=now,
            )
        elif kind == "throttled":
            from django.db.models import F

            not_before = now + timedelta(seconds=outcome.delay)
            self.limiter.hold(self.campaign.mailer, outcome.delay)
            with self.lock:
                self.hold_until = max(self.hold_until or not_before, not_before)
                self.stop_reason = "throttled"
            self.stop.set()  # the rest of the chunk waits too
            mine.update(
                status=Status.QUEUED,
                attempts=F("attempts") - 1,
                next_attempt_at=not_before,
                lease_until=None,
                error=outcome.reason,
                updated_at=now,
            )
        elif kind == "retry" and delivery.attempts < settings.SEND_MAX_ATTEMPTS:
            mine.update(
                status=Status.QUEUED,
                next_attempt_at=now + timedelta(seconds=backoff(delivery.attempts)),
                lease_until=None,
                error=outcome.reason,
                updated_at=now,
            )
        elif kind in ("retry", "failed"):
            reason = outcome.reason
            if kind == "retry":
                reason = f"Gave up after {delivery.attempts} attempts: {reason}"
            mine.update(status=Status.FAILED, lease_until=None, error=reason, updated_at=now)
        else:
            changed = mine.update(
                status=Status.UNCERTAIN, lease_until=None, error=outcome.reason, updated_at=now
            )
            if changed:
                with transaction.atomic():
                    audit.record(
                        by=SENDER,
                        action="delivery.uncertain",
                        obj=delivery,
                        incident=self.incident,
                        after={"campaign": self.campaign.pk, "reason": outcome.reason},
                    )
        self._count(kind)
        if kind != "throttled":
            self._note(kind != "sent", outcome.reason)

    def _note(self, error: bool, reason: str) -> None:
        """Auto-pause when too many of this worker's recent ESP calls failed."""
        with self.lock:
            self.window.append(error)
            errors = sum(self.window)
            full = len(self.window) == self.window.maxlen
            if full and errors / len(self.window) > settings.SEND_ERROR_PAUSE_RATIO:
                if not self.auto_pause_reason:
                    self.auto_pause_reason = (
                        f"Paused automatically: {errors} of the last {len(self.window)} ESP calls "
                        f"failed. Latest: {reason[:300]}"
                    )
                self.stop.set()


# --- Completion and the sweeper ---------------------------------------------------------------


def complete_if_done(campaign_id: int) -> bool:
    """A running campaign with nothing queued or sending becomes completed."""
    pending = Delivery.objects.filter(
        campaign_id=campaign_id, status__in=[Status.QUEUED, Status.SENDING]
    )
    if pending.exists():
        return False
    from campaigns.services.sending import _counts, _lock_campaign

    with transaction.atomic():
        incident_id = (
            Campaign.objects.filter(pk=campaign_id).values_list("incident_id", flat=True).first()
        )
        if incident_id is None:
            return False
        campaign = _lock_campaign(Campaign(pk=campaign_id, incident_id=incident_id))
        if campaign.status != Campaign.Status.RUNNING or pending.exists():
            return False
        campaign.complete()
        audit.record(
            by=SENDER,
            action="campaign.completed",
            obj=campaign,
            incident=campaign.incident,
            after={"counts": _counts(campaign)},
        )
    return True


def _evidence(rows: list[tuple[int, int, str]]) -> dict[int, str]:
    """Delivery id → ESP message id, for rows the ESP is known to have taken.

    Evidence: an id recorded on the row; the sandbox outbox's copy; a send log
    entry (from an ESP webhook) whose metadata carries the delivery id.
    """
    found = {pk: message_id for pk, _, message_id in rows if message_id}
    wanted = [str(pk) for pk, _, _ in rows if pk not in found]
    if not wanted:
        return found
    campaigns = {campaign_id for _, campaign_id, _ in rows}
    since = Campaign.objects.filter(pk__in=campaigns).aggregate(at=Min("launched_at"))["at"]
    outbox = OutboxMessage.objects.filter(**{"headers__X-Amends-Delivery__in": wanted})
    sendlog = SendLogEntry.objects.filter(metadata__delivery_id__in=wanted)
    if since is not None:
        outbox = outbox.filter(created_at__gte=since - timedelta(hours=1))
        sendlog = sendlog.filter(sent_at__gte=since - timedelta(hours=1))
    for headers, message_id in outbox.values_list("headers", "message_id"):
        found.setdefault(int(headers["X-Amends-Delivery"]), message_id)
    for metadata, message_id in sendlog.values_list("metadata", "message_id"):
        found.setdefault(int(metadata["delivery_id"]), message_id)
    return found


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Recover what crashes and lost jobs left behind. Run it every minute; safe to overlap.

    1. `sending` rows whose lease expired: `sent` when there is evidence the ESP
       took them, otherwise `uncertain` (audited). Never sent again by the machine.
    2. Queued rows of cancelled campaigns: `cancelled`.
    3. Running campaigns: completed when nothing is pending; when no worker
       claimed anything for SWEEP_STALE_SECONDS, their due queued rows are
       enqueued again (a duplicate job is harmless: claims are conditional).
    """
    from campaigns.jobs import enqueue_batches

    now = now or timezone.now()
    report = {"recovered_sent": 0, "uncertain": 0, "cancelled": 0, "batches": 0, "completed": 0}
    expired = list(
        Delivery.objects.filter(status=Status.SENDING, lease_until__lt=now)
        .order_by("id")
        .values_list("id", "campaign_id", "esp_message_id")[:10_000]
    )
    if expired:
        evidence = _evidence(expired)
        uncertain: dict[int, list[int]] = {}
        for pk, campaign_id, _ in expired:
            stale = Delivery.objects.filter(pk=pk, status=Status.SENDING, lease_until__lt=now)
            if pk in evidence:
                report["recovered_sent"] += stale.update(
                    status=Status.SENT,
                    esp_message_id=evidence[pk][:255],
                    sent_at=now,
                    lease_until=None,
                    updated_at=now,
                )
            elif stale.update(
                status=Status.UNCERTAIN,
                lease_until=None,
                error="The worker stopped before recording the ESP's answer; it may have been sent.",
                updated_at=now,
            ):
                uncertain.setdefault(campaign_id, []).append(pk)
        for campaign_id, ids in uncertain.items():
            report["uncertain"] += len(ids)
            campaign = Campaign.objects.select_related("incident").get(pk=campaign_id)
            with transaction.atomic():
                audit.record(
                    by=SWEEPER,
                    action="delivery.uncertain",
                    obj=campaign,
                    incident=campaign.incident,
                    after={"deliveries": ids[:1000], "count": len(ids), "reason": "lease expired"},
                )
    report["cancelled"] = Delivery.objects.filter(
        campaign__status=Campaign.Status.CANCELLED, status=Status.QUEUED
    ).update(status=Status.CANCELLED, updated_at=now)
    stale_before = now - timedelta(seconds=settings.SWEEP_STALE_SECONDS)
    for campaign in Campaign.objects.filter(status=Campaign.Status.RUNNING):
        if complete_if_done(campaign.pk):
            report["completed"] += 1
            continue
        last = campaign.last_claim_at or campaign.launched_at
        if last is not None and last > stale_before:
            continue  # a worker is on it
        ranges = batch_ranges(campaign.pk, campaign.batch_size, due_by=now)
        if ranges:
            enqueue_batches(campaign.pk, ranges)
            report["batches"] += len(ranges)
    return report
