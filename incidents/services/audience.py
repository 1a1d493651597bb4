"""Freezing the affected list, extending and trimming it, and splitting it into segments."""

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from incidents import audit
from incidents.actors import Actor
from incidents.addresses import InvalidAddress, normalise
from incidents.filters import AudienceFilter, rules_q
from incidents.freeze_sql import freeze_statement, list_hash_postgres, use_bulk_memory
from incidents.models import AffectedPerson, AudienceQuery, Incident, Segment
from incidents.models.audience import list_digest
from incidents.pseudonym import address_ref, pseudonymise_addresses
from incidents.queue import enqueue

DEFAULT_SEGMENT_NAME = "Everyone else"
_SOURCE_COLUMNS = (
    "address",
    "recipient",
    "customer_id",
    "locale",
    "metadata",
    "status",
    "message_id",
    "sent_at",
)


def _lock(incident: Incident) -> Incident:
    # Freezes, segment changes and removals on one incident take turns.
    return Incident.objects.select_for_update().get(pk=incident.pk)


def default_segment(incident: Incident) -> Segment:
    segment, _ = Segment.objects.get_or_create(
        incident=incident, is_default=True, defaults={"name": DEFAULT_SEGMENT_NAME}
    )
    return segment


def list_hash(incident: Incident) -> str:
    if connection.vendor == "postgresql":
        return list_hash_postgres(incident.pk)
    addresses = (
        AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True)
        .order_by("address")
        .values_list("address", flat=True)
        .iterator(chunk_size=10_000)
    )
    return list_digest(
        sorted(addresses)
    )  # SQLite's ORDER BY is byte order too; sorted() is a guard


def _active_count(incident: Incident) -> int:
    return AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True).count()


@transaction.atomic
def audience_freeze_start(
    *, incident: Incident, filters: AudienceFilter, by: Actor
) -> AudienceQuery:
    """Freeze now if the query is small; otherwise queue the freeze as a background job.

    A million people take tens of seconds to freeze, longer than a web request
    should wait; the queued query's status shows how it is going.
    """
    messages = filters.queryset().order_by().count()
    if messages <= settings.AUDIENCE_FREEZE_INLINE_MAX_MESSAGES:
        return audience_freeze(incident=incident, filters=filters, by=by)
    query = AudienceQuery.objects.create(
        incident=incident,
        filters=filters.as_json(),
        message_count=messages,
        created_by=by.user,
        list_hash="",
        status=AudienceQuery.Status.QUEUED,
    )
    audit.record(
        by=by,
        action="audience.freeze_queued",
        obj=query,
        incident=incident,
        after={"filters": query.filters, "message_count": messages},
    )
    from incidents.jobs import run_audience_freeze

    enqueue(run_audience_freeze, query.pk, job_timeout=settings.AUDIENCE_FREEZE_JOB_TIMEOUT)
    return query


@transaction.atomic
def audience_freeze(
    *, incident: Incident, filters: AudienceFilter, by: Actor, query: AudienceQuery | None = None
) -> AudienceQuery:
    """Write everyone the query finds into the incident's affected list, once each.

    `query` is a queued query being frozen by the background job.
    """
    incident = _lock(incident)
    segment = default_segment(incident)
    before = AffectedPerson.objects.filter(incident=incident).count()
    source = filters.queryset().order_by().values(*_SOURCE_COLUMNS)
    message_count = source.count()
    if query is None:
        query = AudienceQuery.objects.create(
            incident=incident, filters=filters.as_json(), created_by=by.user, list_hash=""
        )
    source_sql, source_params = source.query.sql_with_params()
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        use_bulk_memory(cursor)
        cursor.execute(
            freeze_statement(source_sql),
            [incident.pk, segment.pk, query.pk, now, *source_params],
        )
        people_count = cursor.rowcount
    query.message_count = message_count
    query.people_count = people_count
    query.people_added = AffectedPerson.objects.filter(incident=incident).count() - before
    _apply_segments(incident)
    query.list_hash = list_hash(incident)
    query.status = AudienceQuery.Status.DONE
    query.save(
        update_fields=["message_count", "people_count", "people_added", "list_hash", "status"]
    )
    audit.record(
        by=by,
        action="audience.frozen",
        obj=query,
        incident=incident,
        after={
            "filters": query.filters,
            "message_count": message_count,
            "people_count": people_count,
            "people_added": query.people_added,
            "list_size": _active_count(incident),
            "list_hash": query.list_hash,
        },
    )
    return query


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str


@dataclass(frozen=True)
class CsvAddResult:
    added: int
    already_listed: int
    problems: list[RowProblem]


MAX_EXTRA_ROWS = 100_000


def _extra_rows(text: str) -> Iterable[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text))
    headers = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "address" not in headers and "email" not in headers:
        raise ValidationError("The file needs an “address” (or “email”) column.")
    reader.fieldnames = headers
    for row in reader:
        yield reader.line_num, row


@transaction.atomic
def affected_add_from_csv(
    *, incident: Incident, text: str, by: Actor, note: str = ""
) -> CsvAddResult:
    """Add people the send log does not know about (from a CSV: address, customer_id, locale)."""
    incident = _lock(incident)
    segment = default_segment(incident)
    problems: list[RowProblem] = []
    people: dict[str, AffectedPerson] = {}
    now = timezone.now()
    for line, row in _extra_rows(text):
        if len(people) + len(problems) >= MAX_EXTRA_ROWS:
            raise ValidationError(f"A file of extra people holds at most {MAX_EXTRA_ROWS} rows.")
        if None in row:
            problems.append(RowProblem(line, "the row has more columns than the header"))
            continue
        raw = row.get("address") or row.get("email") or ""
        try:
            address = normalise(raw)
        except InvalidAddress as exc:
            problems.append(RowProblem(line, str(exc)))
            continue
        people.setdefault(
            address,
            AffectedPerson(
                incident=incident,
                address=address,
                original_address=raw.strip(),
                customer_id=(row.get("customer_id") or "").strip()[:100],
                locale=(row.get("locale") or "").strip().lower()[:16],
                segment=segment,
                source=AffectedPerson.Source.CSV,
                added_at=now,
            ),
        )
    existing = set(
        AffectedPerson.objects.filter(incident=incident, address__in=list(people)).values_list(
            "address", flat=True
        )
    )
    new = [person for address, person in people.items() if address not in existing]
    AffectedPerson.objects.bulk_create(new, batch_size=2000)
    _apply_segments(incident)
    result = CsvAddResult(added=len(new), already_listed=len(existing), problems=problems)
    audit.record(
        by=by,
        action="audience.extended_from_file",
        obj=incident,
        incident=incident,
        after={
            "added": result.added,
            "already_listed": result.already_listed,
            "rejected_rows": len(problems),
            "note": note,
            "list_size": _active_count(incident),
            "list_hash": list_hash(incident),
        },
    )
    return result


@transaction.atomic
def affected_remove(*, person: AffectedPerson, reason: str, by: Actor) -> AffectedPerson:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why this person is removed from the list."})
    _lock(person.incident)
    person = AffectedPerson.objects.select_for_update().get(pk=person.pk)
    if person.removed_at:
        raise ValidationError("This person was already removed from the list.")
    person.removed_at, person.removed_reason, person.removed_by = timezone.now(), reason, by.user
    person.save(update_fields=["removed_at", "removed_reason", "removed_by"])
    audit.record(
        by=by,
        action="audience.person_removed",
        obj=person,
        incident=person.incident,
        after={
            "person": address_ref(person.address),
            "reason": pseudonymise_addresses(reason),
            "list_size": _active_count(person.incident),
            "list_hash": list_hash(person.incident),
        },
    )
    return person


# --- Segments -----------------------------------------------------------------


def _apply_segments(incident: Incident) -> dict[str, int]:
    """Put every person in exactly one segment: the first whose rules match, else the default."""
    default = default_segment(incident)
    people = AffectedPerson.objects.filter(incident=incident)
    people.exclude(segment=default).update(segment=default)
    counts = {}
    for segment in incident.segments.filter(is_default=False).order_by("position", "id"):
        counts[segment.name] = (
            people.filter(segment=default).filter(rules_q(segment.rules)).update(segment=segment)
        )
    counts[default.name] = people.filter(segment=default).count()
    return counts


@transaction.atomic
def segments_apply(*, incident: Incident, by: Actor) -> dict[str, int]:
    incident = _lock(incident)
    counts = _apply_segments(incident)
    audit.record(by=by, action="segments.applied", obj=incident, incident=incident, after=counts)
    return counts


@transaction.atomic
def segment_save(
    *,
    incident: Incident,
    name: str,
    rules: list[dict],
    by: Actor,
    position: int | None = None,
    segment: Segment | None = None,
) -> Segment:
    """Create or change a segment, then re-split the list so each person is in exactly one."""
    incident = _lock(incident)
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the segment a name."})
    rules_q(rules)  # refuse bad rules before anything changes
    if segment is not None and segment.is_default and rules:
        raise ValidationError("The default segment catches everyone else; it has no rules.")
    if (
        Segment.objects.filter(incident=incident, name=name)
        .exclude(pk=getattr(segment, "pk", None))
        .exists()
    ):
        raise ValidationError({"name": f"This incident already has a segment called “{name}”."})
    before = None
    if segment is None:
        default_segment(incident)
        last = incident.segments.filter(is_default=False).order_by("-position").first()
        segment = Segment(
            incident=incident,
            position=position if position is not None else (last.position + 1 if last else 0),
        )
    else:
        before = {"name": segment.name, "rules": segment.rules, "position": segment.position}
        if position is not None:
            segment.position = position
    segment.name, segment.rules = name, rules
    segment.save()
    counts = _apply_segments(incident)
    audit.record(
        by=by,
        action="segment.saved",
        obj=segment,
        incident=incident,
        before=before,
        after={"name": name, "rules": rules, "position": segment.position, "counts": counts},
    )
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment, by: Actor) -> dict[str, int]:
    incident = _lock(segment.incident)
    if segment.is_default:
        raise ValidationError("The default segment cannot be deleted: it catches everyone else.")
    if hasattr(segment, "message"):
        # Its apology, versions and approvals are evidence; they must not lose their segment.
        raise ValidationError(
            f"“{segment.name}” has an apology written for it, so it cannot be deleted. "
            "Change its rules instead."
        )
    default = default_segment(incident)
    AffectedPerson.objects.filter(segment=segment).update(segment=default)
    before = {"name": segment.name, "rules": segment.rules}
    segment.delete()
    counts = _apply_segments(incident)
    audit.record(
        by=by,
        action="segment.deleted",
        object_type="incidents.segment",
        object_id=str(before["name"]),
        incident=incident,
        before=before,
        after={"counts": counts},
    )
    return counts
