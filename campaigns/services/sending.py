"""Launching, topping up and controlling campaigns; deciding on uncertain deliveries.

Each workflow runs in one transaction with its audit entry, and hands work to
the "send" queue on commit (campaigns.jobs). The worker side is campaigns/sending/.
A signed-in person needs the permission named on each function; system actors
(the sweeper, auto-pause, management commands) are trusted code paths.
See docs/sending.md.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from campaigns import selectors
from campaigns.models import Campaign, Delivery, MessageVersion, Suppression
from campaigns.models.sending import (
    CODE_ALPHABET,
    CODE_LENGTH,
    UNFINISHED,
    new_verification_code,
)
from incidents import audit
from incidents.access import require
from incidents.actors import Actor
from incidents.freeze_sql import use_bulk_memory
from incidents.models import AffectedPerson, Incident, Segment

LAUNCH_PERM = "campaigns.launch_campaign"
CONTROL_PERM = "campaigns.control_campaign"
RESOLVE_PERM = "campaigns.resolve_delivery"

_INSERT_CHUNK = 2000


def _allowed(by: Actor, perm: str) -> None:
    if by.user is not None:
        require(by.user, perm)


def _lock_campaign(campaign: Campaign) -> Campaign:
    # Same order as version_create and the audience services: incident first.
    Incident.objects.select_for_update().get(pk=campaign.incident_id)
    return (
        Campaign.objects.select_for_update()
        .select_related("incident", "segment", "version__message")
        .get(pk=campaign.pk)
    )


def _require_sendable(version: MessageVersion, segment: Segment) -> MessageVersion:
    """The version is the segment's latest and its approval binds its current content."""
    version = MessageVersion.objects.select_related("message__segment").get(pk=version.pk)
    message = version.message
    if message.segment_id != segment.pk:
        raise ValidationError(f"Version {version.number} is not the apology for “{segment}”.")
    if version.number != message.version_count:
        raise ValidationError(
            f"Version {version.number} is not the latest; version {message.version_count} "
            "replaced it. Launch the latest version once it is approved."
        )
    if not selectors.version_is_approved(version):
        raise ValidationError(
            f"Version {version.number} is not approved, or its text no longer matches what "
            "was approved. Nothing was sent."
        )
    return version


def _counts(campaign: Campaign) -> dict[str, int]:
    """Deliveries per status, for audit entries."""
    rows = campaign.deliveries.order_by().values_list("status").annotate(n=Count("id"))
    return dict(rows)


# --- Creating deliveries -----------------------------------------------------------------


# A verification code per row, in SQL: 10 characters of CODE_ALPHABET (5 bits each) from
# the bytes of gen_random_uuid(), which draws on the server's strong random source. Bytes
# 6 and 8 hold the UUID's version and variant, so they are skipped. Written out inline: a
# SQL function doing the same is six times slower over a million rows (not inlined).
_CODE_SQL = " || ".join(
    f"substr('{CODE_ALPHABET}', (get_byte(p.rnd, {i}) & 31) + 1, 1)"
    for i in (0, 1, 2, 3, 4, 5, 7, 9, 10, 11)
)
assert CODE_LENGTH == 10


def _insert_postgres(campaign: Campaign, *, send_again: bool, now) -> int:
    """One INSERT … SELECT: the database makes a million rows without a round trip each."""
    # The constant incident lets this use the partial unique index (incident, person).
    prior = (
        "EXISTS (SELECT 1 FROM campaigns_delivery d WHERE d.incident_id = %(incident)s "
        "AND d.person_id = p.id AND NOT d.resend)"
    )
    sql = f"""
        INSERT INTO campaigns_delivery (
            campaign_id, incident_id, person_id, address, locale, status, attempts,
            esp_message_id, error, created_at, updated_at, verification_code, resend
        )
        SELECT %(campaign)s, p.incident_id, p.id, btrim(p.original_address, E' \\t\\r\\n'), p.locale,
               CASE WHEN p.address IN (SELECT s.address FROM campaigns_suppression s)
                    THEN 'suppressed' ELSE 'queued' END,
               0, '', '', %(now)s, %(now)s, {_CODE_SQL},
               {prior if send_again else "false"}
        FROM (
            SELECT p.*, uuid_send(gen_random_uuid()) AS rnd
            FROM incidents_affectedperson p
            WHERE p.incident_id = %(incident)s AND p.segment_id = %(segment)s
              AND p.removed_at IS NULL
        ) p
        WHERE TRUE
          AND NOT EXISTS (
              SELECT 1 FROM campaigns_delivery c
              WHERE c.campaign_id = %(campaign)s AND c.person_id = p.id
          )
          {"" if send_again else "AND NOT " + prior}
        ORDER BY p.id
    """  # noqa: S608 (constant fragments; values are parameters)
    params = {
        "campaign": campaign.pk,
        "incident": campaign.incident_id,
        "segment": campaign.segment_id,
        "now": now,
    }
    with connection.cursor() as cursor:
        use_bulk_memory(cursor)
        # A freshly frozen list has no statistics yet; the planner then expects one person
        # and picks nested loops, which rescan the growing delivery table for every row
        # (minutes for 200,000 people). Hash anti-joins do it in one pass whatever it expects.
        # (A failed insert rolls back to its savepoint, which undoes the SET LOCAL too.)
        cursor.execute("SET LOCAL enable_nestloop = off")
        cursor.execute(sql, params)
        inserted = cursor.rowcount
        cursor.execute("SET LOCAL enable_nestloop = on")
        return inserted


def _insert_portable(campaign: Campaign, *, send_again: bool, now) -> int:
    """SQLite (the embedded mode): the same rows, made in Python in chunks."""
    prior = set(
        Delivery.objects.filter(incident_id=campaign.incident_id, resend=False).values_list(
            "person_id", flat=True
        )
    )
    people = (
        AffectedPerson.objects.filter(
            incident_id=campaign.incident_id, segment_id=campaign.segment_id, removed_at=None
        )
        .exclude(deliveries__campaign=campaign)
        .order_by("id")
        .values_list("id", "address", "original_address", "locale")
    )
    if not send_again:
        people = people.exclude(id__in=prior)
    created, chunk = 0, []

    def flush():
        nonlocal created
        suppressed = set(
            Suppression.objects.filter(address__in=[row[1] for row in chunk]).values_list(
                "address", flat=True
            )
        )
        rows = [
            Delivery(
                campaign=campaign,
                incident_id=campaign.incident_id,
                person_id=person_id,
                address=original.strip(),
                locale=locale,
                status=Delivery.Status.SUPPRESSED
                if address in suppressed
                else Delivery.Status.QUEUED,
                created_at=now,
                updated_at=now,
                verification_code=new_verification_code(),
                resend=person_id in prior,
            )
            for person_id, address, original, locale in chunk
        ]
        Delivery.objects.bulk_create(rows)
        created += len(rows)
        chunk.clear()

    for row in people.iterator(chunk_size=_INSERT_CHUNK):
        chunk.append(row)
        if len(chunk) >= _INSERT_CHUNK:
            flush()
    if chunk:
        flush()
    return created


def _create_deliveries(campaign: Campaign, *, send_again: bool) -> int:
    """One delivery per active person of the segment who should get one. Returns how many.

    A verification code collision (50 random bits; rare but possible over many
    campaigns) makes the unique index refuse the insert: it is retried with new codes.
    """
    insert = _insert_postgres if connection.vendor == "postgresql" else _insert_portable
    for attempt in range(3):
        try:
            with transaction.atomic():
                return insert(campaign, send_again=send_again, now=timezone.now())
        except IntegrityError as exc:
            if "verification_code" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _enqueue_queued(campaign: Campaign, *, min_id: int | None = None) -> int:
    from campaigns.jobs import enqueue_batches
    from campaigns.sending import batch_ranges

    ranges = batch_ranges(campaign.pk, campaign.batch_size, min_id=min_id)
    enqueue_batches(campaign.pk, ranges)
    return len(ranges)


# --- Launch and top-up -------------------------------------------------------------------


@transaction.atomic
def campaign_launch(
    *,
    version: MessageVersion,
    by: Actor,
    segment: Segment | None = None,
    campaign: Campaign | None = None,
    rate_limit: int | None = None,
    batch_size: int | None = None,
    mailer: str = "default",
    send_again: bool = False,
    resend_reason: str = "",
) -> Campaign:
    """Send approved `version` to `segment` (or launch draft `campaign`): one delivery per person.

    People of the incident who already have an apology are skipped; with
    `send_again` and a `resend_reason` they get it again (marked as a resend,
    audited with the reason). Suppressed people get a `suppressed` delivery and
    are never sent to. Batches go to the "send" queue when the transaction commits.
    """
    _allowed(by, LAUNCH_PERM)
    resend_reason = (resend_reason or "").strip()
    send_again = send_again or bool(resend_reason)
    if send_again and not resend_reason:
        raise ValidationError(
            {"resend_reason": "Say why these people should get the apology again."}
        )
    if (segment is None) == (campaign is None):
        raise TypeError("Give either segment or campaign.")
    if campaign is not None:
        campaign = _lock_campaign(campaign)
        if campaign.status != Campaign.Status.DRAFT:
            raise ValidationError(f"This campaign is {campaign.get_status_display().lower()}.")
        segment = campaign.segment
    incident = Incident.objects.select_for_update().get(pk=segment.incident_id)
    version = _require_sendable(version, segment)
    if mailer not in settings.MAILERS:
        raise ValidationError({"mailer": f"No mailer called “{mailer}” is configured."})
    rate_limit = rate_limit or settings.SEND_RATE_LIMIT
    batch_size = batch_size or settings.SEND_BATCH_SIZE
    if rate_limit < 1 or batch_size < 1:
        raise ValidationError("Rate limit and batch size must be at least 1.")
    busy = (
        Campaign.objects.filter(segment=segment, status__in=UNFINISHED)
        .exclude(pk=campaign.pk if campaign else None)
        .first()
    )
    if busy is not None:
        raise ValidationError(
            f"Campaign {busy.pk} for “{segment}” is {busy.get_status_display().lower()}. "
            "Finish or cancel it first; people added since its launch get a top-up from it."
        )
    now = timezone.now()
    if campaign is None:
        campaign = Campaign(incident=incident, segment=segment, created_by=by.user, created_at=now)
    campaign.version, campaign.content_hash, campaign.mailer = version, version.content_hash, mailer
    campaign.rate_limit, campaign.batch_size = rate_limit, batch_size
    campaign.is_resend, campaign.resend_reason = send_again, resend_reason
    campaign.launched_by, campaign.launched_at = by.user, now
    campaign.status = Campaign.Status.RUNNING
    campaign.save()

    created = _create_deliveries(campaign, send_again=send_again)
    if created == 0:
        already = Delivery.objects.filter(
            incident=incident, person__segment=segment, resend=False
        ).exists()
        if already and not send_again:
            raise ValidationError(
                f"Everyone in “{segment}” already has an apology for this incident. To send it "
                "again, choose “send again” and say why."
            )
        raise ValidationError(f"“{segment}” has no one to send to.")
    counts = _counts(campaign)
    batches = _enqueue_queued(campaign)
    audit.record(
        by=by,
        action="campaign.launched",
        obj=campaign,
        incident=incident,
        after={
            "segment": segment.name,
            "message": version.message_id,
            "version": version.number,
            "content_hash": version.content_hash,
            "deliveries": created,
            "queued": counts.get(Delivery.Status.QUEUED, 0),
            "suppressed": counts.get(Delivery.Status.SUPPRESSED, 0),
            "resends": campaign.deliveries.filter(resend=True).count() if send_again else 0,
            "send_again": send_again,
            "resend_reason": resend_reason,
            "rate_limit": rate_limit,
            "batch_size": batch_size,
            "batches": batches,
            "mailer": mailer,
        },
    )
    return campaign


@transaction.atomic
def campaign_top_up(*, campaign: Campaign, by: Actor) -> int:
    """Deliveries for people added to the segment since launch who have no apology yet.

    Same approval, so only while the version is still the segment's latest and its
    content hash is the one bound at launch. Returns how many were added.
    """
    _allowed(by, LAUNCH_PERM)
    campaign = _lock_campaign(campaign)
    if campaign.status in (Campaign.Status.DRAFT, Campaign.Status.CANCELLED):
        raise ValidationError(
            f"A {campaign.get_status_display().lower()} campaign cannot be topped up."
        )
    version = _require_sendable(campaign.version, campaign.segment)
    if version.content_hash != campaign.content_hash:
        raise ValidationError("The text changed since launch. Launch a new campaign for it.")
    before = campaign.deliveries.order_by("-id").values_list("id", flat=True).first() or 0
    added = _create_deliveries(campaign, send_again=False)
    if added:
        if campaign.status == Campaign.Status.COMPLETED:
            campaign.transition_to(Campaign.Status.RUNNING)
        if campaign.status == Campaign.Status.RUNNING:
            _enqueue_queued(campaign, min_id=before + 1)
    new = campaign.deliveries.filter(id__gt=before)
    audit.record(
        by=by,
        action="campaign.topped_up",
        obj=campaign,
        incident=campaign.incident,
        after={
            "added": added,
            "queued": new.filter(status=Delivery.Status.QUEUED).count(),
            "suppressed": new.filter(status=Delivery.Status.SUPPRESSED).count(),
            "content_hash": campaign.content_hash,
        },
    )
    return added


# --- Control -----------------------------------------------------------------------------


@transaction.atomic
def campaign_pause(*, campaign: Campaign, by: Actor, reason: str = "") -> Campaign:
    """Stop sending within seconds. Claimed, unsent deliveries go back to the queue."""
    _allowed(by, CONTROL_PERM)
    campaign = _lock_campaign(campaign)
    reason = (reason or "").strip() or f"Paused by {by.label}."
    campaign.pause(reason)
    audit.record(
        by=by,
        action="campaign.paused",
        obj=campaign,
        incident=campaign.incident,
        after={"reason": reason, "counts": _counts(campaign)},
    )
    return campaign


def campaign_auto_pause(*, campaign_id: int, reason: str) -> bool:
    """The worker's pause (error rate, changed text). Does nothing unless the campaign runs."""
    with transaction.atomic():
        incident_id = Campaign.objects.values_list("incident_id", flat=True).get(pk=campaign_id)
        campaign = _lock_campaign(Campaign(pk=campaign_id, incident_id=incident_id))
        if campaign.status != Campaign.Status.RUNNING:
            return False
        campaign.pause(reason)
        audit.record(
            by=Actor.system("sender"),
            action="campaign.auto_paused",
            obj=campaign,
            incident=campaign.incident,
            after={"reason": reason, "counts": _counts(campaign)},
        )
    return True


@transaction.atomic
def campaign_resume(*, campaign: Campaign, by: Actor) -> Campaign:
    """Send the rest: every delivery still queued, whatever was sent before the pause.

    There is no position to continue from; each delivery's own status says what
    is left. The approval must still hold.
    """
    _allowed(by, CONTROL_PERM)
    campaign = _lock_campaign(campaign)
    if campaign.status != Campaign.Status.PAUSED:
        raise ValidationError(
            f"Only a paused campaign can be resumed; this one is "
            f"{campaign.get_status_display().lower()}."
        )
    version = _require_sendable(campaign.version, campaign.segment)
    if version.content_hash != campaign.content_hash:
        raise ValidationError("The text changed since launch. Cancel, and launch the new version.")
    campaign.resume()
    batches = _enqueue_queued(campaign)
    audit.record(
        by=by,
        action="campaign.resumed",
        obj=campaign,
        incident=campaign.incident,
        after={"batches": batches, "counts": _counts(campaign)},
    )
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, by: Actor) -> Campaign:
    """Stop for good: queued deliveries become `cancelled`; messages in flight finish."""
    _allowed(by, CONTROL_PERM)
    campaign = _lock_campaign(campaign)
    campaign.cancel()
    cancelled = campaign.deliveries.filter(status=Delivery.Status.QUEUED).update(
        status=Delivery.Status.CANCELLED, updated_at=timezone.now()
    )
    audit.record(
        by=by,
        action="campaign.cancelled",
        obj=campaign,
        incident=campaign.incident,
        after={"cancelled": cancelled, "counts": _counts(campaign)},
    )
    return campaign


# --- Uncertain deliveries ---------------------------------------------------------------

RESOLVE_DECISIONS = ("resend", "mark_sent")


@transaction.atomic
def delivery_resolve_uncertain(
    *, delivery: Delivery, decision: str, by: Actor, reason: str
) -> Delivery:
    """A person decides on a delivery nobody knows was sent: send it again, or count it sent.

    "resend" may give the person a second copy, so it needs a person and a reason,
    like every other "send again".
    """
    if by.user is None:
        raise PermissionDenied("Only a signed-in person can decide on an uncertain delivery.")
    require(by.user, RESOLVE_PERM)
    if decision not in RESOLVE_DECISIONS:
        raise ValidationError({"decision": "Choose “resend” or “mark_sent”."})
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why, for the audit trail."})
    campaign = _lock_campaign(delivery.campaign)
    delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
    if delivery.status != Delivery.Status.UNCERTAIN:
        raise ValidationError(
            f"This delivery is {delivery.get_status_display().lower()}, not uncertain."
        )
    if decision == "resend":
        if campaign.status == Campaign.Status.CANCELLED:
            raise ValidationError("The campaign was cancelled; launch a “send again” campaign.")
        version = _require_sendable(campaign.version, campaign.segment)
        if version.content_hash != campaign.content_hash:
            raise ValidationError("The text changed since launch; it cannot be resent as it was.")
        delivery.transition_to(Delivery.Status.QUEUED, error=f"Resend decided: {reason}")
        if campaign.status == Campaign.Status.COMPLETED:
            campaign.transition_to(Campaign.Status.RUNNING)
        if campaign.status == Campaign.Status.RUNNING:
            from campaigns.jobs import enqueue_batches

            enqueue_batches(campaign.pk, [(delivery.pk, delivery.pk)])
    else:
        delivery.transition_to(Delivery.Status.SENT, error=f"Marked sent: {reason}")
    audit.record(
        by=by,
        action="delivery.uncertain_resolved",
        obj=delivery,
        incident=campaign.incident,
        after={"campaign": campaign.pk, "decision": decision, "reason": reason},
    )
    if decision == "mark_sent":
        from campaigns.sending import complete_if_done

        transaction.on_commit(lambda: complete_if_done(campaign.pk))
    return delivery
