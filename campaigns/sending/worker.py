"""One send job: claim chunks of an id range and send them with a pool of threads."""

import logging
import math
import queue
import threading
import time
from collections import deque
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import connections
from django.db.models import Min
from django.utils import timezone

from campaigns.models import Campaign, Delivery
from campaigns.rendering import RenderError
from campaigns.sending.claims import Chunk, HandOver, claim_chunk, hand_back, release
from campaigns.sending.esp import open_mailer
from campaigns.sending.limits import limiter
from campaigns.sending.message import Composer
from campaigns.sending.outcomes import Outcome, change_for, classify
from campaigns.sending.recorder import Recorder
from campaigns.sending.rows import SendRow
from campaigns.sending.sweeper import complete_if_done
from incidents.actors import Actor

log = logging.getLogger(__name__)

SENDER = Actor.system("sender")
Status = Delivery.Status

# Messages sent from the job's own thread to learn whether the ESP keeps calls waiting.
_PROBE = 2
# The most rate tokens one Redis call takes for a thread (at high rates: a few groups' worth).
_TOKENS_A_CALL = 256

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
        self.taking = threading.Lock()  # sending threads take rows and submit them in turn
        self.window: deque[bool] = deque(maxlen=max(1, settings.SEND_ERROR_WINDOW))
        self.stop = threading.Event()
        self.stop_reason = ""  # "paused", "cancelled", "throttled", "auto_pause"
        self.auto_pause_reason = ""
        self.hold_until: datetime | None = None
        self.last_check = time.monotonic()
        self.composer = Composer(campaign)
        self.recorder: Recorder | None = None
        # Rate tokens are taken from the bucket several at a time per thread (one Redis call
        # for several groups of messages), never more than a thread's share of the bucket.
        capacity = max(1, math.ceil(campaign.rate_limit / 10))
        share = capacity // self.concurrency
        self.token_batch = max(1, min(settings.SEND_GROUP_MAX, share))  # caps a group
        self.token_take = max(1, min(_TOKENS_A_CALL, share))
        self._tokens = threading.local()
        self.inline_size = _PROBE  # group size while sending from the job's own thread

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
        self.recorder = Recorder(
            campaign_id=self.campaign.pk, incident=self.incident, on_failure=self._cannot_record
        )
        self.hand_over = HandOver()  # the sending threads' markers, committed together
        try:
            self._run()
        finally:
            self.hand_over.close()
            self.recorder.close()

    def _cannot_record(self) -> None:
        # The database is gone: stop sending what could not be recorded either.
        with self.lock:
            self.stop_reason = self.stop_reason or "recorder"
        self.stop.set()

    def _run(self) -> None:
        while not self.stop.is_set() and self._still_running():
            chunk = claim_chunk(self.campaign.pk, self.first_id, self.last_id, self.chunk_size)
            if chunk.rows:
                self._send_chunk(chunk)
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
    def _send_chunk(self, chunk: Chunk) -> None:
        deliveries = self._drop_unsendable(chunk.rows, chunk.suppressed)
        work: queue.SimpleQueue[SendRow] = queue.SimpleQueue()
        for delivery in deliveries:
            work.put(delivery)
        unsent: list[int] = []
        slow = self.limiter.known_slow(self.campaign.mailer)
        if deliveries and not slow and self._send_inline(work, unsent):
            threads = []
        else:
            threads = [
                threading.Thread(target=self._thread, args=(work, unsent), daemon=True)
                for _ in range(min(self.concurrency, work.qsize()))
            ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.05)
            self._check_control()
        # Every answer of this chunk is committed before its rows are counted as done,
        # released, or looked at again for the next claim.
        self.recorder.flush()
        while not work.empty():
            unsent.append(work.get().pk)
        if unsent:
            # One claim set one lease on the whole chunk: only rows still under it go back.
            lease = deliveries[0].lease_until
            released = release(unsent, lease=lease, not_before=self.hold_until)
            self._count("released", released)
        if (unsent or self.stop.is_set()) and _status(
            self.campaign.pk
        ) == Campaign.Status.CANCELLED:
            # Cancel ran before these rows went back to the queue (released, or handed back
            # in the middle of a group) and could not see them as queued.
            Delivery.objects.filter(id__in=[d.pk for d in deliveries], status=Status.QUEUED).update(
                status=Status.CANCELLED, updated_at=timezone.now()
            )

    def _drop_unsendable(self, deliveries: list[SendRow], suppressed: set[str]) -> list[SendRow]:
        """Suppressed since launch: `suppressed`. Removed from the list: `cancelled`."""
        if not deliveries:
            return deliveries
        now = timezone.now()
        removed = [d.pk for d in deliveries if d.person.removed_at is not None]
        suppressed_ids = [
            d.pk for d in deliveries if d.person.address in suppressed and d.pk not in removed
        ]
        # Only under this job's claim (one claim set one lease on the chunk): a row the
        # sweeper took back and another job claimed since is no longer ours to change.
        ours = Delivery.objects.filter(status=Status.SENDING, lease_until=deliveries[0].lease_until)
        if removed:
            ours.filter(id__in=removed).update(
                status=Status.CANCELLED,
                error="Removed from the affected list before it was sent.",
                lease_until=None,
                updated_at=now,
            )
            self._count("cancelled", len(removed))
        if suppressed_ids:
            ours.filter(id__in=suppressed_ids).update(
                status=Status.SUPPRESSED,
                error="Suppressed before it was sent.",
                lease_until=None,
                updated_at=now,
            )
            self._count("suppressed", len(suppressed_ids))
        skip = set(removed) | set(suppressed_ids)
        return [d for d in deliveries if d.pk not in skip]

    def _check_control(self) -> None:
        if time.monotonic() - self.last_check >= settings.SEND_CONTROL_CHECK_SECONDS:
            self.last_check = time.monotonic()
            self._still_running()

    # -- sending from the job's own thread, while the ESP answers at once --
    def _send_inline(self, work: queue.SimpleQueue, unsent: list[int]) -> bool:
        """Send from this thread while the ESP keeps no call waiting; False: use threads.

        Threads only pay off while calls wait on the ESP. Against one that answers
        at once (a local relay, anymail's test backend) they cost more than they
        save: the GIL is handed around, and each thread's few rows make a hand-over
        of their own. So each chunk starts here; while a group's fastest ESP call
        takes under SEND_INLINE_CALL_SECONDS, the chunk is sent in groups
        from this thread. Each group's hand-over goes to the job's hand-over
        writer, and while its statement and commit run, this thread renders and
        builds the group's messages; none is given to the ESP before the commit
        (docs/performance.md, session 10). Once calls
        take longer, the rest of the chunk goes to the pool of sending threads;
        for SEND_SLOW_ESP_SECONDS every worker's chunks then start with the pool
        (a probe's calls wait one after the other, while the pool's threads idle),
        and after that a chunk starts with a probe of _PROBE messages again.
        """
        backend = self._open_backend()
        if backend is None:
            return True
        try:
            while not self.stop.is_set():
                group = self._next_group(work, self.inline_size, unsent)
                if not group:
                    return True
                started = time.monotonic()
                ask = self.hand_over.submit(group)
                self.hand_over.begun(ask)  # its round trip overlaps the building below
                prepared = [self._prepare(backend, delivery) for delivery in group]
                handed = self.hand_over.wait(ask)
                sent, fastest = self._send_group(backend, group, handed, prepared)
                self._check_control()
                if sent:
                    # The group's fastest call: a slow ESP makes every call slow, while the
                    # other threads and processes of this machine hold up only a few.
                    if fastest > settings.SEND_INLINE_CALL_SECONDS:
                        self.limiter.remember_slow(
                            self.campaign.mailer, settings.SEND_SLOW_ESP_SECONDS
                        )
                        self.inline_size = _PROBE  # when that is forgotten, ask the ESP again
                        return False
                    self.inline_size = self._group_size((time.monotonic() - started) / sent)
            return True
        finally:
            backend.close()

    # -- a sending thread --
    def _open_backend(self):
        """This thread's connection to the ESP; None (and the job auto-pauses) when it fails."""
        try:
            backend = open_mailer(self.campaign.mailer)
        except Exception as exc:
            log.exception("mailer %r could not be opened", self.campaign.mailer)
            with self.lock:
                self.auto_pause_reason = self.auto_pause_reason or (
                    f"Paused automatically: the mailer “{self.campaign.mailer}” could not be "
                    f"opened ({type(exc).__name__}: {exc})."
                )
            self.stop.set()
            return None
        return backend

    def _thread(self, work: queue.SimpleQueue, unsent: list[int]) -> None:
        backend = self._open_backend()
        try:
            if backend is None:
                return
            size = 1  # the first group measures how long a message takes
            while not self.stop.is_set():
                # A claim hands its rows over in id order: groups are submitted in the
                # order they were taken, and waited for outside the lock.
                with self.taking:
                    group = self._next_group(work, size, unsent)
                    ask = self.hand_over.submit(group)
                if not group:
                    break
                started = time.monotonic()
                sent, _ = self._send_group(backend, group, self.hand_over.wait(ask))
                if sent:
                    size = self._group_size((time.monotonic() - started) / sent)
        finally:
            try:
                if backend is not None:
                    backend.close()
            finally:
                connections.close_all()  # this thread's own database connection

    def _next_group(self, work: queue.SimpleQueue, size: int, unsent: list[int]) -> list:
        """Up to `size` rows with a rate token each and enough lease left; [] when done."""
        tokens = self._take_tokens(size)
        group: list[SendRow] = []
        while len(group) < tokens:
            try:
                delivery = work.get_nowait()
            except queue.Empty:
                break
            if self._lease_holds(delivery):
                group.append(delivery)
            else:
                unsent.append(delivery.pk)
        self._tokens.left += tokens - len(group)
        return group

    def _group_size(self, seconds_a_message: float) -> int:
        # About SEND_GROUP_SECONDS of sending: one message against a slow ESP, where the
        # marker costs nothing beside the call, up to SEND_GROUP_MAX against a fast one.
        fit = int(settings.SEND_GROUP_SECONDS / max(seconds_a_message, 1e-6))
        return max(1, min(settings.SEND_GROUP_MAX, self.token_batch, fit))

    def _send_group(
        self, backend, group: list[SendRow], handed: set[int], prepared: list | None = None
    ) -> tuple[int, float]:
        """Send the rows of `group` that were just marked handed over (`handed`).

        `prepared`: each row's message (or the Outcome of building it), built already.
        Returns the number of ESP calls made and the seconds the fastest one took.
        """
        messages = dict(zip((d.pk for d in group), prepared, strict=True)) if prepared else {}
        if len(handed) < len(group):
            # The sweeper took these rows back after our lease ran out: they are no
            # longer ours to send, nor to release.
            self._count("not_handed", len(group) - len(handed))
        calls, fastest = 0, math.inf
        for index, delivery in enumerate(d for d in group if d.pk in handed):
            if self.stop.is_set():
                # Marked, but never given to the ESP: this worker alone knows it.
                rest = [d for d in group if d.pk in handed][index:]
                self._count("released", hand_back(rest, not_before=self.hold_until))
                break
            started = time.monotonic()
            try:
                outcome = self._send_one(backend, delivery, messages.get(delivery.pk))
            except Exception as exc:  # a bug of ours, not the ESP's answer
                log.exception("delivery %s: unexpected error", delivery.pk)
                outcome = Outcome("uncertain", f"{type(exc).__name__}: {exc}")
            fastest = min(fastest, outcome.seconds or time.monotonic() - started)
            calls += 1
            self._record(delivery, outcome)
        return calls, fastest

    def _take_tokens(self, want: int) -> int:
        """Up to `want` rate tokens (at least one, waiting for it); 0 once the job stops."""
        left = getattr(self._tokens, "left", 0)
        if left > 0:
            self._tokens.left = left - min(left, want)
            return min(left, want)
        while not self.stop.is_set():
            granted, wait = self.limiter.take_some(
                self.campaign.pk,
                self.campaign.rate_limit,
                self.campaign.mailer,
                max(want, self.token_take),
            )
            if granted:
                self._tokens.left = granted - min(granted, want)
                return min(granted, want)
            # In slices, looking at the campaign: while a job sends from its own thread, no
            # other thread does, and a pause must not wait for the end of a 429 hold.
            self.stop.wait(min(wait, settings.SEND_CONTROL_CHECK_SECONDS))
            self._check_control()
        self._tokens.left = 0
        return 0

    def _lease_holds(self, delivery: SendRow) -> bool:
        # Never start an ESP call the sweeper could outrun: half the lease must be left.
        margin = timedelta(seconds=settings.SEND_LEASE_SECONDS / 2)
        return delivery.lease_until is not None and timezone.now() + margin < delivery.lease_until

    def build(self, backend, delivery: SendRow) -> EmailMultiAlternatives:
        return self.composer.build(backend, delivery, self.composer.render(delivery))

    def _prepare(self, backend, delivery: SendRow) -> EmailMultiAlternatives | Outcome:
        """The delivery's message, or the Outcome that it cannot be built. Sends nothing."""
        try:
            return self.build(backend, delivery)
        except (RenderError, ValueError) as exc:
            return Outcome("failed", f"The message could not be built: {exc}")
        except Exception as exc:  # a bug of ours: as if it had happened in _send_one
            log.exception("delivery %s: unexpected error", delivery.pk)
            return Outcome("uncertain", f"{type(exc).__name__}: {exc}")

    def _send_one(
        self, backend, delivery: SendRow, message: EmailMultiAlternatives | Outcome | None = None
    ) -> Outcome:
        message = self._prepare(backend, delivery) if message is None else message
        if isinstance(message, Outcome):
            return message
        started = time.monotonic()
        try:
            backend.send_messages([message])
        except Exception as exc:
            return classify(exc)
        seconds = time.monotonic() - started
        status = getattr(message, "anymail_status", None)
        message_id = (
            status.message_id if status is not None else None
        ) or message.extra_headers.get("Message-ID", "")
        if not isinstance(message_id, str):  # several ids: one To, so never expected
            message_id = ""
        return Outcome("sent", message_id=message_id, seconds=seconds)

    def _record(self, delivery: SendRow, outcome: Outcome) -> None:
        """Hand the answer's write to the recorder; act on what it means for the job now."""
        now = timezone.now()
        kind = outcome.kind
        if kind == "throttled":
            not_before = now + timedelta(seconds=outcome.delay)
            self.limiter.hold(self.campaign.mailer, outcome.delay)
            with self.lock:
                self.hold_until = max(self.hold_until or not_before, not_before)
                self.stop_reason = "throttled"
            self.stop.set()  # the rest of the chunk waits too
        self.recorder.put(change_for(delivery, outcome, now), delivery)
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
