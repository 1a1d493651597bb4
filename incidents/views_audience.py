"""Staff web UI for an incident's audience: find who received it, freeze, segment, trim.

Each view names its permission (through get_incident_for), parses input with a
form, calls one service or selector and renders. The preview updates in place
with htmx; every form also works as a plain form post without JavaScript.
"""

import json
from datetime import UTC, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from incidents import selectors, services
from incidents.access import get_incident_for
from incidents.actors import Actor
from incidents.forms_audience import (
    AddPeopleForm,
    AudienceQueryForm,
    FreezeForm,
    PeopleFilterForm,
    RemovePersonForm,
    SegmentForm,
    add_validation_error,
    describe_rule,
    form_error_text,
)
from incidents.models import AffectedPerson, Incident, Segment, SendLogEntry
from incidents.paging import capped_count, keyset_page

PEOPLE_PAGE_SIZE = 50
PEOPLE_COUNT_CAP = 10_000
RECENT_TEMPLATE_DAYS = 30
RECENT_TEMPLATE_ROWS = 50_000
RECENT_TEMPLATE_LIMIT = 200


def _url(name: str, incident: Incident, **kwargs) -> str:
    return reverse(f"incidents:{name}", kwargs={"reference": incident.reference, **kwargs})


def _partial(request: HttpRequest) -> bool:
    """An htmx swap asks for a fragment; a history restore needs the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


# --- Small view-specific reads ---------------------------------------------------------


def recent_templates(*, also: str = "") -> list[str]:
    """Templates sent in the last 30 days, for the query form's suggestions.

    Bounded twice, to the newest 50,000 entries of those days and to 200 names,
    so a send log of many millions of rows keeps the page fast. A rarely sent
    template may be missing from the suggestions; typing it still works.
    """
    since = timezone.now() - timedelta(days=RECENT_TEMPLATE_DAYS)
    newest = (
        SendLogEntry.objects.filter(sent_at__gte=since)
        .order_by("-sent_at")
        .values("pk")[:RECENT_TEMPLATE_ROWS]
    )
    names = set(
        SendLogEntry.objects.filter(pk__in=newest)
        .exclude(template="")
        .order_by()
        .values_list("template", flat=True)
        .distinct()[:RECENT_TEMPLATE_LIMIT]
    )
    if also:
        names.add(also)
    return sorted(names)


def describe_filters(filters: dict) -> list[tuple[str, str]]:
    """Stored filters as (label, value) pairs a person can read."""

    def moment(value: str) -> str:
        from datetime import datetime

        return datetime.fromisoformat(value).astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")

    rows = []
    if filters.get("template"):
        rows.append(("Template", filters["template"]))
    if filters.get("tags"):
        rows.append(("Tags", ", ".join(filters["tags"])))
    if filters.get("sent_from"):
        rows.append(("Sent from", moment(filters["sent_from"])))
    if filters.get("sent_until"):
        rows.append(("Sent before", moment(filters["sent_until"])))
    for name, label in (("domain", "Domain"), ("locale", "Locale"), ("status", "Latest status")):
        if filters.get(name):
            rows.append((label, filters[name]))
    for key, value in (filters.get("metadata") or {}).items():
        rows.append((f"Metadata {key}", json.dumps(value, ensure_ascii=False)))
    return rows


def _tabs_context(incident: Incident, tab: str) -> dict:
    return {"incident": incident, "tab": tab}


# --- Finding who received it, and freezing them -------------------------------------------


def _finder_context(request: HttpRequest, incident: Incident, data=None) -> dict:
    """The query form, bound when a preview was asked for, and the preview it gives."""
    data = data if data is not None else (request.GET if "preview" in request.GET else None)
    form = AudienceQueryForm(data, initial=AudienceQueryForm.initial_for(incident))
    preview = freeze_form = None
    if data is not None:
        audience_filter = form.audience_filter()
        if audience_filter is not None:
            preview = selectors.audience_preview(filters=audience_filter)
            freeze_form = FreezeForm(
                initial={
                    "filters": json.dumps(preview["filters"], sort_keys=True),
                    "people": preview["people"],
                    "queries_seen": incident.audience_queries.count(),
                }
            )
    return {
        "incident": incident,
        "form": form,
        "preview": preview,
        "freeze_form": freeze_form,
        "recent_templates": recent_templates(also=incident.original_template),
    }


@require_safe
def audience(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.view_affectedperson. ?preview shows what a query would find."""
    incident = get_incident_for(request.user, reference, "incidents.view_affectedperson")
    ctx = _finder_context(request, incident)
    if _partial(request):
        response = render(request, "incidents/audience/_finder.html", ctx)
    else:
        queries = selectors.audience_queries(incident=incident).order_by("-created_at")
        ctx.update(
            _tabs_context(incident, "audience"),
            summary=selectors.audience_summary(incident=incident),
            frozen=[{"query": q, "filters": describe_filters(q.filters)} for q in queries],
            freezing=any(q.status in ("queued", "running") for q in queries),
        )
        response = render(request, "incidents/audience/audience.html", ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _form_data_of(filters_json: str | None) -> dict:
    """The query form's data for the filters a freeze form carried, to show its preview again."""
    try:
        filters = json.loads(filters_json or "")
        return AudienceQueryForm.data_from_filters(filters) if isinstance(filters, dict) else {}
    except (ValueError, TypeError):
        return {}


@require_POST
def audience_freeze(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.add_audiencequery. Freezes the previewed query into the list."""
    incident = get_incident_for(request.user, reference, "incidents.add_audiencequery")
    form = FreezeForm(request.POST)
    back = _url("audience", incident)
    stale = (
        form.is_valid() and form.cleaned_data["queries_seen"] != incident.audience_queries.count()
    )
    if stale:
        form.add_error(
            None,
            "Nothing was frozen: the list changed since this preview (a query was frozen "
            "in between, or the button was pressed twice). Check the frozen queries below, "
            "and preview again if people are still missing.",
        )
    if not form.is_valid():
        messages.error(request, form_error_text(form))
        data = None if stale else _form_data_of(form.data.get("filters"))
        if data:
            return redirect(f"{back}?{urlencode({**data, 'preview': '1'})}#preview")
        return redirect(f"{back}#frozen" if stale else back)
    query = services.audience_freeze_start(
        incident=incident, filters=form.cleaned_data["filters"], by=Actor.from_request(request)
    )
    if query.status != query.Status.DONE:
        messages.info(
            request,
            f"Freezing {query.message_count:,} messages in the background. "
            "This page refreshes until the list is ready.",
        )
        return redirect(f"{back}#frozen")
    messages.success(
        request,
        f"Froze {query.people_count:,} people from {query.message_count:,} messages: "
        f"{query.people_added:,} added to the affected list.",
    )
    return redirect(f"{back}#frozen")


# --- Segments --------------------------------------------------------------------------


def _segment_rows(incident: Incident) -> list[dict]:
    return [
        {**row, "rules": [describe_rule(rule) for rule in row["segment"].rules]}
        for row in selectors.segment_counts(incident=incident)
    ]


def _render_segments(request, incident: Incident, form: SegmentForm | None) -> HttpResponse:
    rows = _segment_rows(incident)
    ctx = {
        **_tabs_context(incident, "segments"),
        "rows": rows,
        "total": sum(row["people"] for row in rows),
        "total_suppressed": sum(row["suppressed"] for row in rows),
        "form": form,
    }
    return render(request, "incidents/audience/segments.html", ctx)


@require_safe
def segments(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.view_segment."""
    incident = get_incident_for(request.user, reference, "incidents.view_segment")
    form = SegmentForm() if request.user.has_perm("incidents.add_segment") else None
    return _render_segments(request, incident, form)


@require_POST
def segment_create(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.add_segment."""
    incident = get_incident_for(request.user, reference, "incidents.add_segment")
    form = SegmentForm(request.POST)
    if form.is_valid():
        try:
            segment = services.segment_save(
                incident=incident,
                name=form.cleaned_data["name"],
                rules=form.cleaned_data["rules"],
                position=form.cleaned_data["position"],
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            messages.success(request, f"Segment “{segment.name}” created; the list is re-split.")
            return redirect(_url("segments", incident))
    return _render_segments(request, incident, form)


@require_http_methods(["GET", "HEAD", "POST"])
def segment_edit(request: HttpRequest, reference: str, segment_id: int) -> HttpResponse:
    """Permission: incidents.change_segment."""
    incident = get_incident_for(request.user, reference, "incidents.change_segment")
    segment = get_object_or_404(Segment, pk=segment_id, incident=incident)
    form = SegmentForm(
        request.POST if request.method == "POST" else None,
        initial=SegmentForm.initial_for(segment),
        is_default=segment.is_default,
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.segment_save(
                incident=incident,
                segment=segment,
                name=form.cleaned_data["name"],
                rules=form.cleaned_data["rules"],
                position=form.cleaned_data.get("position"),
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            messages.success(request, f"Segment “{form.cleaned_data['name']}” saved.")
            return redirect(_url("segments", incident))
    ctx = {**_tabs_context(incident, "segments"), "segment": segment, "form": form}
    return render(request, "incidents/audience/segment_form.html", ctx)


@require_http_methods(["GET", "HEAD", "POST"])
def segment_delete(request: HttpRequest, reference: str, segment_id: int) -> HttpResponse:
    """Permission: incidents.delete_segment. GET asks; a POST from that page deletes."""
    incident = get_incident_for(request.user, reference, "incidents.delete_segment")
    segment = Segment.objects.filter(pk=segment_id, incident=incident).first()
    if segment is None:
        if request.method == "POST":
            messages.error(request, "That segment no longer exists: it was deleted already.")
            return redirect(_url("segments", incident))
        raise Http404("No such segment.")
    if request.method == "POST" and request.POST.get("confirm") == "delete":
        try:
            services.segment_delete(segment=segment, by=Actor.from_request(request))
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"Segment “{segment.name}” deleted; its people moved on.")
        return redirect(_url("segments", incident))
    if request.method == "POST":
        return redirect(_url("segment-delete", incident, segment_id=segment.pk))
    people = AffectedPerson.objects.filter(segment=segment, removed_at__isnull=True).count()
    ctx = {**_tabs_context(incident, "segments"), "segment": segment, "people": people}
    return render(request, "incidents/audience/segment_delete.html", ctx)


# --- The affected list ---------------------------------------------------------------------


@require_safe
def people(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.view_affectedperson. Keyset pages of 50, searchable."""
    incident = get_incident_for(request.user, reference, "incidents.view_affectedperson")
    segments_ = list(incident.segments.all())
    filters = PeopleFilterForm(request.GET or None, segments=segments_)
    criteria = filters.criteria()
    show = criteria.pop("show")
    qs = selectors.affected_list(incident=incident, include_removed=bool(show), **criteria)
    if show == "removed":
        qs = qs.filter(removed_at__isnull=False).select_related("removed_by")
    page = keyset_page(qs, request.GET, size=PEOPLE_PAGE_SIZE)
    ctx = {
        **_tabs_context(incident, "people"),
        "filters": filters,
        "filtered": any(v not in ("", None) for v in criteria.values()) or bool(show),
        "show": show,
        "page": page,
        "people": page.rows,
        "matches": capped_count(qs, PEOPLE_COUNT_CAP),
        "count_cap": PEOPLE_COUNT_CAP,
    }
    return render(request, "incidents/audience/people.html", ctx)


@require_http_methods(["GET", "HEAD", "POST"])
def person_remove(request: HttpRequest, reference: str, person_id: int) -> HttpResponse:
    """Permission: incidents.change_affectedperson. GET asks why; POST removes."""
    incident = get_incident_for(request.user, reference, "incidents.change_affectedperson")
    person = get_object_or_404(
        AffectedPerson.objects.select_related("segment", "removed_by"),
        pk=person_id,
        incident=incident,
    )
    back = _url("people", incident)
    if person.removed_at:
        messages.info(request, f"{person.original_address} was already removed from the list.")
        return redirect(f"{back}?show=removed&q={person.address}")
    form = RemovePersonForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.affected_remove(
                person=person, reason=form.cleaned_data["reason"], by=Actor.from_request(request)
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            messages.success(request, f"Removed {person.original_address} from the list.")
            return redirect(back)
    ctx = {**_tabs_context(incident, "people"), "person": person, "form": form}
    return render(request, "incidents/audience/person_remove.html", ctx)


@require_http_methods(["GET", "HEAD", "POST"])
def people_add(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.change_affectedperson. Extra people from a CSV file."""
    incident = get_incident_for(request.user, reference, "incidents.change_affectedperson")
    form = AddPeopleForm(
        request.POST if request.method == "POST" else None,
        request.FILES if request.method == "POST" else None,
    )
    result = None
    if request.method == "POST" and form.is_valid():
        try:
            result = services.affected_add_from_csv(
                incident=incident,
                text=form.cleaned_data["file"],
                note=form.cleaned_data["note"],
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            form = AddPeopleForm()
    ctx = {**_tabs_context(incident, "people"), "form": form, "result": result}
    return render(request, "incidents/audience/people_add.html", ctx)
