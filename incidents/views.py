"""Staff web UI for incidents.

Each view names the permission it needs, parses input, calls one service and
renders. Login is enforced for every view by LoginRequiredMiddleware.
"""

from datetime import UTC

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from incidents import selectors, services
from incidents.access import get_incident_for
from incidents.actors import Actor
from incidents.forms import IncidentFilterForm, IncidentForm, NoteForm, TransitionForm
from incidents.forms_audience import RegulatorNotificationForm
from incidents.models import SendLogEntry

PAGE_SIZE = 25


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


def _form_error_text(form) -> str:
    return " ".join(str(message) for errors in form.errors.values() for message in errors)


@require_safe
@permission_required("incidents.view_incident", raise_exception=True)
def incident_list(request: HttpRequest) -> HttpResponse:
    filters = IncidentFilterForm(request.GET or None)
    criteria = filters.selector_kwargs()
    paginator = Paginator(selectors.incident_list(**criteria), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    ctx = {
        "filters": filters,
        "filtered": any(criteria.values()),
        "page": page,
        "incidents": page.object_list,
    }
    return render(request, "incidents/list.html", ctx)


@require_http_methods(["GET", "POST"])
@permission_required("incidents.add_incident", raise_exception=True)
def incident_create(request: HttpRequest) -> HttpResponse:
    form = IncidentForm(request.POST or None, initial={"owner": request.user})
    if request.method == "POST" and form.is_valid():
        try:
            incident = services.incident_open(by=Actor.from_request(request), **form.cleaned_data)
        except ValidationError as e:
            form.add_error(None, e)
        else:
            messages.success(request, f"Opened {incident.reference}.")
            return redirect(incident)
    return render(request, "incidents/form.html", {"form": form, "incident": None})


@require_safe
def incident_detail(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_incident_for(request.user, reference, "incidents.view_incident")
    ctx = {
        "incident": incident,
        "clock": incident.regulator_clock(),
        "regulator_hours": settings.REGULATOR_DEADLINE_HOURS,
        "timeline": selectors.incident_timeline(incident=incident),
        "note_form": NoteForm(),
        "transition_form": TransitionForm(),
        "regulator_form": RegulatorNotificationForm(),
        "tab": "overview",
    }
    if request.user.has_perm("incidents.view_affectedperson"):
        ctx["audience"] = selectors.audience_summary(incident=incident)
        ctx["sendlog_empty"] = not SendLogEntry.objects.exists()
    return render(request, "incidents/detail.html", ctx)


@require_http_methods(["GET", "POST"])
def incident_edit(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_incident_for(request.user, reference, "incidents.change_incident")
    form = IncidentForm(request.POST or None, instance=incident)
    if request.method == "POST" and form.is_valid():
        if not form.has_changed():
            messages.info(request, "Nothing changed.")
            return redirect(incident)
        try:
            services.incident_update(
                incident=incident, by=Actor.from_request(request), **form.changes()
            )
        except ValidationError as e:
            form.add_error(None, e)
        else:
            messages.success(request, "Changes saved.")
            return redirect(incident)
    return render(request, "incidents/form.html", {"form": form, "incident": incident})


@require_POST
def incident_transition(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_incident_for(request.user, reference, "incidents.transition_incident")
    form = TransitionForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_error_text(form))
        return redirect(incident)
    if form.needs_confirmation() and incident.Status.RESOLVED in incident.allowed_transitions():
        # A separate step: the page explains what resolving means and asks for
        # the confirmation. A second POST with the box ticked does the change.
        # (When resolving is not possible from here, the service says why below.)
        # An unticked checkbox sends nothing, so the confirm page marks its own posts.
        if request.POST.get("step") == "confirm":
            form.add_error("confirm", "Tick the box to confirm before resolving.")
        return render(
            request, "incidents/confirm_resolve.html", {"incident": incident, "form": form}
        )
    try:
        incident = services.incident_transition(
            incident=incident,
            to_status=form.cleaned_data["to_status"],
            note=form.cleaned_data["note"].strip(),
            by=Actor.from_request(request),
        )
    except ValidationError as e:  # IllegalTransition included
        messages.error(request, _error_text(e))
    else:
        messages.success(request, f"{incident.reference} is now {incident.get_status_display()}.")
    return redirect(incident)


@require_POST
def incident_add_note(request: HttpRequest, reference: str) -> HttpResponse:
    incident = get_incident_for(request.user, reference, "incidents.add_note")
    form = NoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_error_text(form))
        return redirect(incident)
    try:
        services.incident_add_note(
            incident=incident, body=form.cleaned_data["body"], by=Actor.from_request(request)
        )
    except ValidationError as e:
        messages.error(request, _error_text(e))
        return redirect(incident)
    messages.success(request, "Note added.")
    return redirect(f"{incident.get_absolute_url()}#timeline")


@require_POST
def regulator_notification(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.change_incident. Records the notification; stops the clock."""
    incident = get_incident_for(request.user, reference, "incidents.change_incident")
    back = f"{incident.get_absolute_url()}#regulator"
    if incident.regulator_notified_at:
        when = incident.regulator_notified_at.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")
        messages.error(
            request, f"Nothing changed: the regulator notification ({when}) is already recorded."
        )
        return redirect(back)
    form = RegulatorNotificationForm(request.POST)
    if not form.is_valid():
        messages.error(request, _form_error_text(form))
        return redirect(back)
    try:
        services.incident_record_regulator_notification(
            incident=incident,
            notified_at=form.cleaned_data["notified_at"],
            reference=form.cleaned_data["reference"],
            by=Actor.from_request(request),
        )
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect(back)
    messages.success(
        request,
        f"Regulator notification recorded. The {settings.REGULATOR_DEADLINE_HOURS}-hour clock "
        "is stopped.",
    )
    return redirect(back)
