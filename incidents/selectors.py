"""Reads for incidents: list filters and the timeline."""

from django.db.models import Q, QuerySet

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
