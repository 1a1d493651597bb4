"""The incident dashboard: counts, funnel, time to contact and activity over time.

`compute_dashboard` counts everything (seconds at a million people);
`dashboard_for` is what pages and the API call: it returns the incident's
ContactSnapshot and refreshes it when it is older than
DASHBOARD_SNAPSHOT_MAX_AGE_SECONDS (or twice the last count's duration, if longer),
inline for a small incident, through a queued
job for a large one (the page then shows the previous figures with their time).
So a dashboard render is one primary-key read, however large the incident.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q
from django.db.models.functions import Trunc
from django.utils import timezone

from incidents.models import AffectedPerson, ContactSnapshot, Incident
from incidents.models.contact import ContactMethod, ContactStatus
from incidents.paging import capped_count
from incidents.queue import enqueue
from incidents.selectors_contact import unconfirmed_cutoff

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 99)
MAX_BUCKETS = 48
# A refresh request older than this is assumed lost (a crashed worker) and asked again.
REFRESH_CLAIM_SECONDS = 60
_UNITS = (("minute", 60), ("hour", 3600), ("day", 86400))
# ESP event types drawn as "bounced or failed".
_FAILED = ("bounced", "complained", "rejected", "failed")


# --- Counting -----------------------------------------------------------------------------


def _people(incident: Incident) -> dict:
    rows = (
        AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True)
        .values_list("segment_id", "contact_status", "contact_method")
        .annotate(
            n=Count("id"),
            unassigned=Count("id", filter=Q(followup_assignee__isnull=True)),
        )
        .order_by()
    )
    by_status = dict.fromkeys(ContactStatus.values, 0)
    methods = dict.fromkeys(ContactMethod.values, 0)
    segments: dict[int, dict[str, int]] = {}
    unassigned = 0
    for segment_id, status, method, n, free in rows:
        by_status[status] += n
        seg = segments.setdefault(segment_id, dict.fromkeys(ContactStatus.values, 0))
        seg[status] += n
        if status == ContactStatus.CONTACTED and method in methods:
            methods[method] += n
        if status == ContactStatus.UNREACHABLE:
            unassigned += free
    names = dict(incident.segments.values_list("pk", "name"))
    return {
        "people": sum(by_status.values()),
        "removed": AffectedPerson.objects.filter(
            incident=incident, removed_at__isnull=False
        ).count(),
        "by_status": by_status,
        "methods": methods,
        "unreachable_unassigned": unassigned,
        "segments": [
            {"id": pk, "name": names.get(pk, f"#{pk}"), "people": sum(c.values()), "by_status": c}
            for pk, c in sorted(segments.items(), key=lambda item: names.get(item[0], ""))
        ],
    }


def _deliveries(incident: Incident, now: datetime) -> tuple[dict, dict]:
    """Deliveries per status, the funnel's people and the unconfirmed count: one scan."""
    from campaigns.models import ACCEPTED, Campaign, Delivery

    unconfirmed = Q(status=Delivery.Status.SENT, sent_at__lt=unconfirmed_cutoff(now))
    rows = (
        Delivery.objects.filter(
            campaign_id__in=Campaign.objects.filter(incident=incident).values("pk")
        )
        .values_list("resend", "status")
        .annotate(
            n=Count("id"),
            delivered=Count("id", filter=Q(delivered_at__isnull=False)),
            unconfirmed=Count("id", filter=unconfirmed),
        )
        .order_by()
    )
    by_status = dict.fromkeys(Delivery.Status.values, 0)
    sent = delivered = resent = late = 0
    for resend, status, n, reached, stale in rows:
        by_status[status] += n
        resent += n if resend else 0
        late += stale
        # The funnel counts people, by their first apology (one per person: the
        # delivery_once_per_incident index); copies sent again are counted apart.
        if not resend:
            sent += n if status in ACCEPTED else 0
            delivered += reached
    funnel = {"sent": sent, "delivered": delivered, "sent_again": resent}
    return by_status, funnel | {"unconfirmed": late}


def _percentiles(incident: Incident) -> dict:
    contacted = AffectedPerson.objects.filter(
        incident=incident, removed_at__isnull=True, contact_status=ContactStatus.CONTACTED
    ).exclude(contacted_at__isnull=True)
    start = incident.created_at
    if connection.vendor == "postgresql":
        fractions = [p / 100 for p in PERCENTILES]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), percentile_disc(%s::float8[]) WITHIN GROUP "
                "(ORDER BY contacted_at) FROM incidents_affectedperson WHERE incident_id = %s "
                "AND removed_at IS NULL AND contact_status = %s AND contacted_at IS NOT NULL",
                [fractions, incident.pk, ContactStatus.CONTACTED],
            )
            n, moments = cursor.fetchone()
        moments = moments or []
    else:
        n = contacted.count()
        ordered = contacted.order_by("contacted_at").values_list("contacted_at", flat=True)
        # percentile_disc: the first value whose cumulative share reaches p.
        moments = [ordered[max(0, -(-n * p // 100) - 1)] for p in PERCENTILES] if n else []
    seconds = {
        f"p{p}": max(0, int((moment - start).total_seconds())) if moment else None
        for p, moment in zip(PERCENTILES, moments or [None] * len(PERCENTILES), strict=True)
    }
    return {"contacted": n, "since": start.isoformat(), **seconds}


def _unit_for(first: datetime | None, last: datetime | None) -> tuple[str, int]:
    span = (last - first).total_seconds() if first and last else 0
    for unit, seconds in _UNITS:
        if span <= seconds * MAX_BUCKETS * 4:
            return unit, seconds
    return _UNITS[-1]


def _series(qs, moment, unit: str) -> dict[datetime, int]:
    rows = (
        qs.exclude(**{f"{moment}__isnull": True})
        .annotate(t=Trunc(moment, unit, tzinfo=UTC))
        .values_list("t")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def _chart(incident: Incident, now: datetime) -> tuple[dict, dict[str, int]]:
    """The time series and the ESP events per type, from two scans.

    Sent comes from the deliveries (when each was handed to the ESP); delivered,
    bounced or failed, and all events come from the ESP's events, by when each
    arrived, in the same GROUP BY that counts the events per type.
    """
    from campaigns.models import Campaign, Delivery, DeliveryEvent

    campaigns = Campaign.objects.filter(incident=incident)
    events = DeliveryEvent.objects.filter(incident_id=incident.pk)
    # Both bounds come from indexes: the campaigns' launches and event_incident.
    firsts = [
        t
        for t in (
            campaigns.aggregate(first=Min("launched_at"))["first"],
            events.aggregate(first=Min("received_at"))["first"],
        )
        if t
    ]
    if not firsts:
        return {"unit": "", "step": 0, "buckets": []}, {}
    first, last = min(firsts), now
    unit, unit_seconds = _unit_for(first, last)
    sent = _series(Delivery.objects.filter(campaign_id__in=campaigns.values("pk")), "sent_at", unit)
    event_rows = (
        events.annotate(t=Trunc("received_at", unit, tzinfo=UTC))
        .values_list("t", "event_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_type: dict[str, int] = {}
    reached: dict[datetime, int] = {}
    failed: dict[datetime, int] = {}
    received: dict[datetime, int] = {}
    for moment, kind, n in event_rows:
        by_type[kind] = by_type.get(kind, 0) + n
        received[moment] = received.get(moment, 0) + n
        if kind == "delivered":
            reached[moment] = reached.get(moment, 0) + n
        elif kind in _FAILED:
            failed[moment] = failed.get(moment, 0) + n
    # Fold the unit-wide rows into at most MAX_BUCKETS equal buckets.
    units = int((last - first).total_seconds() // unit_seconds) + 1
    per_bucket = max(1, -(-units // MAX_BUCKETS))
    step = unit_seconds * per_bucket
    origin = _floor(first, unit_seconds)
    count = int((last - origin).total_seconds() // step) + 1
    buckets = [
        {"t": (origin + timedelta(seconds=i * step)).isoformat(), "sent": 0, "delivered": 0}
        | {"failed": 0, "events": 0}
        for i in range(count)
    ]
    for name, series in (
        ("sent", sent),
        ("delivered", reached),
        ("failed", failed),
        ("events", received),
    ):
        for moment, n in series.items():
            index = int((moment - origin).total_seconds() // step)
            if 0 <= index < count:
                buckets[index][name] += n
    return {"unit": unit, "step": step, "buckets": buckets}, by_type


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def compute_dashboard(*, incident: Incident, now: datetime | None = None) -> dict:
    """Every figure the dashboard shows, counted now: five scans, seconds at a million people."""
    now = now or timezone.now()
    people = _people(incident)
    deliveries, funnel = _deliveries(incident, now)
    chart, events = _chart(incident, now)
    return {
        **people,
        "deliveries": deliveries,
        "funnel": {
            "affected": people["people"],
            "sent": funnel["sent"],
            "delivered": funnel["delivered"],
            "contacted": people["by_status"][ContactStatus.CONTACTED],
        },
        "sent_again": funnel["sent_again"],
        "events": events,
        "unconfirmed": funnel["unconfirmed"],
        "unconfirmed_after_minutes": settings.RECONCILE_UNCONFIRMED_AFTER_MINUTES,
        "time_to_contact": _percentiles(incident),
        "chart": chart,
    }


# --- The snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    data: dict  # compute_dashboard's figures; {} while the first count is running
    as_of: datetime | None
    refreshing: bool  # a newer count is on its way

    @property
    def ready(self) -> bool:
        return self.as_of is not None


def refresh_snapshot(*, incident: Incident) -> ContactSnapshot:
    """Count now and store the figures. Safe to run twice at once: the later write wins."""
    started = timezone.now()
    clock = time.monotonic()
    data = compute_dashboard(incident=incident, now=started)
    took = int((time.monotonic() - clock) * 1000)
    ContactSnapshot.objects.update_or_create(
        incident=incident,
        defaults={
            "data": data,
            "computed_at": started,
            "took_ms": took,
            "refresh_requested_at": None,
        },
    )
    return ContactSnapshot.objects.get(pk=incident.pk)


def refresh_snapshot_job(incident_id: int) -> None:
    """Queued by dashboard_for when a large incident's figures are stale. Idempotent."""
    incident = Incident.objects.filter(pk=incident_id).first()
    if incident is None:
        return
    snapshot = refresh_snapshot(incident=incident)
    log.info("dashboard of %s counted in %s ms", incident.reference, snapshot.took_ms)


def _request_refresh(incident: Incident, now: datetime) -> bool:
    """Queue one refresh job, whoever else asks at the same time. True if a job is on its way."""
    ContactSnapshot.objects.get_or_create(incident=incident)
    stale_claim = now - timedelta(seconds=REFRESH_CLAIM_SECONDS)
    claimed = (
        ContactSnapshot.objects.filter(pk=incident.pk)
        .filter(Q(refresh_requested_at__isnull=True) | Q(refresh_requested_at__lt=stale_claim))
        .update(refresh_requested_at=now)
    )
    if claimed:
        enqueue(refresh_snapshot_job, incident.pk)
    return True


def dashboard_for(*, incident: Incident, now: datetime | None = None) -> Dashboard:
    """The incident's figures, at most DASHBOARD_SNAPSHOT_MAX_AGE_SECONDS old when possible."""
    now = now or timezone.now()
    snapshot = ContactSnapshot.objects.filter(pk=incident.pk).first()
    # A count that takes 6 s is not started again 5 s after the last: at most half of
    # the time goes to counting, however large the incident.
    took = snapshot.took_ms / 1000 if snapshot else 0
    max_age = timedelta(seconds=max(settings.DASHBOARD_SNAPSHOT_MAX_AGE_SECONDS, 2 * took))
    if snapshot and snapshot.computed_at and now - snapshot.computed_at <= max_age:
        return Dashboard(snapshot.data, snapshot.computed_at, refreshing=False)
    if snapshot and snapshot.computed_at:
        size = snapshot.data.get("people", 0) + snapshot.data.get("removed", 0)
    else:
        limit = settings.DASHBOARD_INLINE_MAX_PEOPLE
        size = capped_count(AffectedPerson.objects.filter(incident=incident), limit)
    if size <= settings.DASHBOARD_INLINE_MAX_PEOPLE:
        snapshot = refresh_snapshot(incident=incident)
        return Dashboard(snapshot.data, snapshot.computed_at, refreshing=False)
    _request_refresh(incident, now)
    snapshot = ContactSnapshot.objects.get(pk=incident.pk)  # the job may have run inline
    return Dashboard(
        snapshot.data if snapshot.computed_at else {},
        snapshot.computed_at,
        refreshing=snapshot.refresh_requested_at is not None,
    )
