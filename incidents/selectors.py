"""Reads for incidents: list filters and the timeline."""

from django.db.models import Q, QuerySet

from incidents.filters import AudienceFilter
from incidents.models import Incident, TimelineEntry


def incident_list(
    *, status: str = "", severity: str = "", owner_id: int | None = None, search: str = ""
) -> QuerySet[Incident]:
    qs = Incident.objects.select_related("owner")
    if status:
        qs = qs.filter(status=status)
    if severity:
        qs = qs.filter(severity=severity)
    if owner_id:
        qs = qs.filter(owner_id=owner_id)
    if search:
        qs = qs.filter(
            Q(reference__icontains=search)
            | Q(title__icontains=search)
            | Q(summary__icontains=search)
            | Q(original_template__icontains=search)
            | Q(original_subject__icontains=search)
        )
    return qs


def incident_timeline(*, incident: Incident) -> QuerySet[TimelineEntry]:
    return incident.timeline.select_related("author")


# --- Audience -----------------------------------------------------------------
PREVIEW_SAMPLE_SIZE = 20


def audience_preview(*, filters: AudienceFilter) -> dict:
    """What freezing `filters` would find: messages, distinct people, people per locale, a sample."""
    from django.db import connection, transaction

    from incidents.freeze_sql import preview_statement, use_bulk_memory

    source = filters.queryset().order_by().values("address", "locale", "sent_at", "message_id")
    sql, params = source.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        use_bulk_memory(cursor)
        cursor.execute(*preview_statement(sql, params))
        by_locale = [
            {"locale": locale or "", "people": people, "messages": int(messages)}
            for locale, people, messages in cursor.fetchall()
        ]
    sample = list(
        filters.queryset()
        # sent_at alone, so the (template, sent_at) index returns the first rows directly.
        .order_by("sent_at")
        .values(
            "message_id", "recipient", "customer_id", "sent_at", "locale", "status", "template"
        )[:PREVIEW_SAMPLE_SIZE]
    )
    return {
        "filters": filters.as_json(),
        "messages": sum(row["messages"] for row in by_locale),
        "people": sum(row["people"] for row in by_locale),
        "by_locale": by_locale,
        "sample": sample,
    }


def affected_list(
    *,
    incident: Incident,
    segment_id: int | None = None,
    search: str = "",
    suppressed: bool | None = None,
    include_removed: bool = False,
):
    """The incident's affected people, each flagged `is_suppressed` from the suppression list."""
    from django.db.models import Exists, OuterRef

    from campaigns.models import Suppression
    from incidents.models import AffectedPerson

    qs = AffectedPerson.objects.filter(incident=incident).select_related("segment")
    qs = qs.annotate(is_suppressed=Exists(Suppression.objects.filter(address=OuterRef("address"))))
    if not include_removed:
        qs = qs.filter(removed_at__isnull=True)
    if segment_id:
        qs = qs.filter(segment_id=segment_id)
    if search:
        needle = search.strip().lower()
        qs = qs.filter(Q(address__contains=needle) | Q(customer_id=search.strip()))
    if suppressed is not None:
        qs = qs.filter(is_suppressed=suppressed)
    return qs.order_by("id")


def segment_counts(*, incident: Incident) -> list[dict]:
    """Each segment with its number of active and suppressed people, default last."""
    from django.db.models import Count, Exists, OuterRef

    from campaigns.models import Suppression
    from incidents.models import AffectedPerson

    active = AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True)
    suppressed = active.filter(Exists(Suppression.objects.filter(address=OuterRef("address"))))
    people = dict(active.values_list("segment_id").annotate(n=Count("id")).order_by())
    flagged = dict(suppressed.values_list("segment_id").annotate(n=Count("id")).order_by())
    return [
        {
            "segment": segment,
            "people": people.get(segment.pk, 0),
            "suppressed": flagged.get(segment.pk, 0),
        }
        for segment in incident.segments.all()
    ]


def audience_summary(*, incident: Incident) -> dict:
    from incidents.models import AffectedPerson

    people = AffectedPerson.objects.filter(incident=incident)
    return {
        "people": people.filter(removed_at__isnull=True).count(),
        "removed": people.filter(removed_at__isnull=False).count(),
        "queries": incident.audience_queries.count(),
        "segments": segment_counts(incident=incident),
    }


def audience_queries(*, incident: Incident):
    return incident.audience_queries.select_related("created_by")


# --- Send log -----------------------------------------------------------------


def sendlog_list(*, template: str = "", sent_from=None, sent_until=None, address: str = ""):
    from incidents.models import SendLogEntry

    qs = SendLogEntry.objects.all()
    if template:
        qs = qs.filter(template=template)
    if sent_from:
        qs = qs.filter(sent_at__gte=sent_from)
    if sent_until:
        qs = qs.filter(sent_at__lt=sent_until)
    if address:
        qs = qs.filter(address=address)
    return qs


def sendlog_import_list():
    from incidents.models import SendLogImport

    return SendLogImport.objects.select_related("created_by")
