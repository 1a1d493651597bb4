"""Completion and recovery: finished campaigns complete; expired leases and lost jobs are handled."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Min
from django.utils import timezone

from campaigns.models import Campaign, Delivery, DeliveryEvent, OutboxMessage, SendClaim
from campaigns.sending.claims import batch_ranges
from incidents import audit
from incidents.actors import Actor
from incidents.models import SendLogEntry

SENDER = Actor.system("sender")
SWEEPER = Actor.system("sweeper")
Status = Delivery.Status

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
    entry (from an ESP webhook) whose metadata carries the delivery id; a stored
    ESP event (DeliveryEvent) for the delivery.
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
    # A stored ESP event (campaigns/tracking) saying the ESP took it, applied or not yet.
    from django.db.models import Q

    from campaigns.models import DeliveryEvent

    events = DeliveryEvent.objects.filter(
        Q(delivery_id__in=[int(pk) for pk in wanted]) | Q(metadata__delivery_id__in=wanted),
        event_type__in=("sent", "delivered", "deferred", "bounced", "complained", "opened"),
    )
    if since is not None:
        events = events.filter(received_at__gte=since - timedelta(hours=1))
    for delivery_id, metadata, message_id in events.values_list(
        "delivery_id", "metadata", "message_id"
    ):
        pk = delivery_id or int(metadata["delivery_id"])
        if str(pk) in wanted:
            found.setdefault(pk, message_id)
    return found


def sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Recover what crashes and lost jobs left behind. Run it every minute; safe to overlap.

    1. `sending` rows whose lease expired: their claim is revoked first (from then
       on its worker can hand nothing more over). Then each row is `sent` when
       there is evidence the ESP took it; back to `queued` when it lies past what
       its claim handed over (the worker died before that row's ESP call);
       otherwise `uncertain` (audited), never sent again by the machine.
    2. Queued rows of cancelled campaigns: `cancelled`.
    3. Running campaigns: completed when nothing is pending; when no worker
       claimed anything for SWEEP_STALE_SECONDS, their due queued rows are
       enqueued again (a duplicate job is harmless: claims are conditional).
    4. ESP events stored more than APPLY_FORGOTTEN_SECONDS ago and not applied
       (the web process that stored them died before its apply push): the
       apply job is queued.
    """
    from campaigns.jobs import enqueue_batches

    now = now or timezone.now()
    report = {
        "recovered_sent": 0,
        "requeued": 0,
        "uncertain": 0,
        "cancelled": 0,
        "batches": 0,
        "completed": 0,
    }
    expired = list(
        Delivery.objects.filter(status=Status.SENDING, lease_until__lt=now)
        .order_by("id")
        .values_list("id", "campaign_id", "esp_message_id", "claim_id")[:10_000]
    )
    requeued_in: set[int] = set()
    if expired:
        evidence = _evidence([(pk, campaign_id, mid) for pk, campaign_id, mid, _ in expired])
        handed_through = _revoke({claim_id for *_, claim_id in expired}, now)
        uncertain: dict[int, list[int]] = {}
        for pk, campaign_id, _, claim_id in expired:
            stale = Delivery.objects.filter(
                pk=pk, status=Status.SENDING, lease_until__lt=now, claim_id=claim_id
            )
            # No claim, or one the sweeper could not revoke: counted as handed (cautious).
            handed = pk <= handed_through.get(claim_id, pk)
            if pk in evidence:
                report["recovered_sent"] += stale.update(
                    status=Status.SENT,
                    esp_message_id=evidence[pk][:255],
                    sent_at=now,
                    lease_until=None,
                    updated_at=now,
                )
            elif not handed and (
                requeued := stale.update(
                    status=Status.QUEUED,
                    attempts=F("attempts") - 1,
                    lease_until=None,
                    next_attempt_at=None,
                    updated_at=now,
                )
            ):
                # Never handed to the ESP, and its claim is revoked: the worker that
                # still holds the row can no longer hand it over (claims.hand_over), so
                # sending it again cannot make a second apology.
                report["requeued"] += requeued
                requeued_in.add(campaign_id)
            elif handed and stale.update(
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
        if last is not None and last > stale_before and campaign.pk not in requeued_in:
            continue  # a worker is on it (rows queued again above belong to no job)
        ranges = batch_ranges(campaign.pk, campaign.batch_size, due_by=now)
        if ranges:
            enqueue_batches(campaign.pk, ranges)
            report["batches"] += len(ranges)
    report["apply_queued"] = _queue_forgotten_events(now)
    return report


def _revoke(claim_ids: set[int | None], now: datetime) -> dict[int | None, int]:
    """Revoke the claims whose lease ran out; how far each one handed its rows over.

    The revoke commits before any row is looked at: a worker's hand-over that
    committed first is counted, and once revoked a claim hands nothing more over.
    A row without a claim, or under a claim that no longer exists, counts as
    handed over (the cautious side: evidence or `uncertain`, never sent again).
    """
    claims = SendClaim.objects.filter(pk__in=[pk for pk in claim_ids if pk is not None])
    claims.filter(lease_until__lt=now, revoked_at__isnull=True).update(revoked_at=now)
    revoked = claims.filter(revoked_at__isnull=False).values_list("pk", "handed_through")
    return {pk: handed_through or 0 for pk, handed_through in revoked}


def _queue_forgotten_events(now: datetime) -> int:
    """Queue the apply job when stored events have waited too long (its push was lost)."""
    from campaigns.jobs import enqueue_apply

    waited = now - timedelta(seconds=settings.APPLY_FORGOTTEN_SECONDS)
    if DeliveryEvent.objects.filter(applied_at__isnull=True, received_at__lt=waited).exists():
        enqueue_apply()
        return 1
    return 0
