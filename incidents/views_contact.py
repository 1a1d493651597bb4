"""Staff web UI for reaching every affected person: the follow-up queue and one person's contact.

Each view names its permission (get_incident_for, `require` for a second one),
parses input with a form, calls one service or selector and renders. Support
records contacts and takes follow-ups (record_contact); Comms and Admin waive
(waive_contact); everyone else reads. A refusal is shown as the service words it
and changes nothing. The queue pages by id (keyset), so it stays fast at a million.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from incidents import selectors_contact as selectors
from incidents import services
from incidents.access import get_incident_for, require
from incidents.actors import Actor
from incidents.forms_audience import add_validation_error
from incidents.forms_contact import (
    AssignForm,
    BulkForm,
    FollowUpFilterForm,
    RecordContactForm,
    UnreachableForm,
    WaiveForm,
)
from incidents.models import AffectedPerson, Incident
from incidents.models.contact import ContactStatus
from incidents.paging import capped_count, keyset_page

VIEW_PERM = "incidents.view_affectedperson"
FOLLOW_UP_PERM = "incidents.record_contact"
WAIVE_PERM = "incidents.waive_contact"
PAGE_SIZE = 50
COUNT_CAP = 10_000


def _url(name: str, incident: Incident, **kwargs) -> str:
    return reverse(f"incidents:{name}", kwargs={"reference": incident.reference, **kwargs})


def _error_text(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return " ".join(m for messages_ in error.message_dict.values() for m in messages_)
    return " ".join(error.messages)


def _filters(request: HttpRequest, incident: Incident, data) -> FollowUpFilterForm:
    if data and "status" not in data:
        # ?segment=3 alone is the queue of that segment: show "Unreachable" as chosen.
        data = data.copy()
        data["status"] = ContactStatus.UNREACHABLE
    return FollowUpFilterForm(
        data or None,
        initial={"status": ContactStatus.UNREACHABLE},
        segments=list(incident.segments.all()),
        assignees=list(selectors.followup_assignees()),
    )


def _criteria(form: FollowUpFilterForm) -> dict:
    return form.criteria(default_status=ContactStatus.UNREACHABLE)


def _describe(criteria: dict) -> str:
    """The filters as one line for the audit entry of a bulk action."""
    return ", ".join(f"{k}={v}" for k, v in criteria.items() if v not in ("", None, False))


def _can_act(user) -> bool:
    return user.has_perm(FOLLOW_UP_PERM) or user.has_perm(WAIVE_PERM)


# --- The follow-up queue ---------------------------------------------------------------------


@require_safe
def followup(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.view_affectedperson. Unreachable people by default; any status."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    form = _filters(request, incident, request.GET)
    criteria = _criteria(form)
    qs = selectors.contact_people(incident=incident, user=request.user, **criteria)
    page = keyset_page(qs, request.GET, size=PAGE_SIZE)
    for person in page.rows:
        person.reason = selectors.REASONS.get(selectors.reason_of(person), "")
    query = {k: v for k, v in request.GET.items() if k not in ("after", "before")}
    ctx = {
        "incident": incident,
        "tab": "followup",
        "filters": form,
        "criteria": criteria,
        "status_label": ContactStatus(criteria["status"]).label if criteria["status"] else "",
        "page": page,
        "people": page.rows,
        # Counted without the per-row delivery look-ups (kept only when a reason filters).
        "matches": capped_count(qs.values("pk"), COUNT_CAP),
        "count_cap": COUNT_CAP,
        "query": urlencode(query),
        "can_act": _can_act(request.user),
        "methods": RecordContactForm().fields["method"].choices,
        "back": request.get_full_path(),
        # The bulk form repeats the filters, so "all matching" means what the page shows.
        "hidden": list(({"status": criteria["status"]} | _query_of(request.GET)).items()),
        "bulk_max": settings.CONTACT_BULK_MAX,
    }
    return render(request, "incidents/followup.html", ctx)


@require_POST
def followup_bulk(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: record_contact (assign, record) or waive_contact (waive). The ticked
    people, or everyone the queue's filters match (at most CONTACT_BULK_MAX)."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    if not _can_act(request.user):
        raise PermissionDenied(f"Your role does not allow this ({FOLLOW_UP_PERM}).")
    form = BulkForm(request.POST)
    filters = _filters(request, incident, request.POST)
    criteria = _criteria(filters)
    back = f"{_url('followup', incident)}?{urlencode(_query_of(request.POST))}"
    if not form.is_valid():
        messages.error(request, " ".join(m for errs in form.errors.values() for m in errs))
        return redirect(back)
    action = form.cleaned_data["action"]
    require(request.user, WAIVE_PERM if action == "waive" else FOLLOW_UP_PERM)
    people = selectors.contact_people(incident=incident, user=request.user, **criteria)
    if form.cleaned_data["scope"] == "selected":
        people = AffectedPerson.objects.filter(incident=incident, pk__in=form.cleaned_data["ids"])
    try:
        result = services.contact_bulk(
            incident=incident,
            people=people,
            action="assign" if action == "assign_me" else action,
            assignee=request.user if action == "assign_me" else None,
            method=form.cleaned_data.get("method") or "",
            note=form.cleaned_data.get("note") or "",
            description=_describe(criteria) if form.cleaned_data["scope"] == "all" else "ticked",
            by=Actor.from_request(request),
        )
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect(back)
    done = dict(BulkForm.ACTIONS)[action].lower()
    text = f"{done.capitalize()}: {result.changed:,} {_people(result.changed)} changed."
    if result.skipped:
        text += f" {result.skipped:,} skipped (the action does not apply to them)."
    messages.success(request, text)
    return redirect(back)


def _people(n: int) -> str:
    return "person" if n == 1 else "people"


def _query_of(data) -> dict:
    keys = ("status", "failed", "segment", "assignee", "reason", "locale", "q")
    return {k: data.get(k) for k in keys if data.get(k)}


# --- One person ---------------------------------------------------------------------------------


def _person(incident: Incident, person_id: int) -> AffectedPerson:
    try:
        return selectors.contact_person(incident=incident, person_id=person_id)
    except AffectedPerson.DoesNotExist:
        return get_object_or_404(AffectedPerson, pk=0)  # a 404 like every other miss


def _render_person(request, incident: Incident, person: AffectedPerson, **forms) -> HttpResponse:
    user = request.user
    may_follow_up = user.has_perm(FOLLOW_UP_PERM)
    ctx = {
        "incident": incident,
        "tab": "followup",
        "person": person,
        "history": selectors.contact_history(person=person),
        "deliveries": selectors.person_deliveries(person=person),
        "record_form": forms.get("record_form") or (RecordContactForm() if may_follow_up else None),
        "unreachable_form": UnreachableForm()
        if may_follow_up and person.contact_status == ContactStatus.PENDING
        else None,
        "waive_form": forms.get("waive_form")
        or (WaiveForm() if user.has_perm(WAIVE_PERM) else None),
        "assignees": list(selectors.followup_assignees()) if may_follow_up else [],
        "back": _safe_next(request) or _url("followup", incident),
    }
    return render(request, "incidents/followup_person.html", ctx)


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    ok = url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure())
    return target if ok and target.startswith("/") else ""


def _done(request, incident: Incident, person: AffectedPerson, text: str) -> HttpResponse:
    messages.success(request, text)
    return redirect(_safe_next(request) or _url("contact-person", incident, person_id=person.pk))


def _refused(request, incident: Incident, person: AffectedPerson, exc) -> HttpResponse:
    messages.error(request, _error_text(exc))
    return redirect(_url("contact-person", incident, person_id=person.pk))


@require_safe
def contact_person(request: HttpRequest, reference: str, person_id: int) -> HttpResponse:
    """Permission: incidents.view_affectedperson. Status, ledger, deliveries and the actions."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    return _render_person(request, incident, _person(incident, person_id))


@require_POST
def contact_record(request: HttpRequest, reference: str, person_id: int) -> HttpResponse:
    """Permission: incidents.record_contact. Phone, letter, support ticket or in person."""
    incident = get_incident_for(request.user, reference, FOLLOW_UP_PERM)
    person = _person(incident, person_id)
    form = RecordContactForm(request.POST)
    if form.is_valid():
        try:
            services.contact_record(
                person=person, by=Actor.from_request(request), **form.cleaned_data
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                add_validation_error(form, exc)
            else:
                return _refused(request, incident, person, exc)
        else:
            method = dict(form.fields["method"].choices)[form.cleaned_data["method"]].lower()
            return _done(request, incident, person, f"Contact by {method} recorded.")
    return _render_person(request, incident, person, record_form=form)


@require_POST
def contact_unreachable(request: HttpRequest, reference: str, person_id: int) -> HttpResponse:
    """Permission: incidents.record_contact. A pending person goes to the follow-up queue."""
    incident = get_incident_for(request.user, reference, FOLLOW_UP_PERM)
    person = _person(incident, person_id)
    form = UnreachableForm(request.POST)
    if not form.is_valid():
        return _refused(request, incident, person, ValidationError(list(form.errors.values())))
    try:
        services.contact_mark_unreachable(
            person=person, note=form.cleaned_data["note"], by=Actor.from_request(request)
        )
    except ValidationError as exc:
        return _refused(request, incident, person, exc)
    return _done(request, incident, person, "Marked unreachable: they are in the follow-up queue.")


@require_POST
def contact_waive(request: HttpRequest, reference: str, person_id: int) -> HttpResponse:
    """Permission: incidents.waive_contact (Comms, Admin). Needs a reason."""
    incident = get_incident_for(request.user, reference, WAIVE_PERM)
    person = _person(incident, person_id)
    form = WaiveForm(request.POST)
    if form.is_valid():
        try:
            services.contact_waive(
                person=person, reason=form.cleaned_data["reason"], by=Actor.from_request(request)
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                add_validation_error(form, exc)
            else:
                return _refused(request, incident, person, exc)
        else:
            return _done(request, incident, person, "Waived. The reason is in the ledger.")
    return _render_person(request, incident, person, waive_form=form)


@require_POST
def contact_assign(request: HttpRequest, reference: str, person_id: int) -> HttpResponse:
    """Permission: incidents.record_contact. assignee = me, none, or a user id."""
    incident = get_incident_for(request.user, reference, FOLLOW_UP_PERM)
    person = _person(incident, person_id)
    form = AssignForm(request.POST)
    valid, assignee = (
        form.resolve(request.user, selectors.followup_assignees())
        if form.is_valid()
        else (False, None)
    )
    if not valid:
        messages.error(request, "Choose who follows this person up.")
        return redirect(_url("contact-person", incident, person_id=person.pk))
    try:
        services.contact_assign(person=person, assignee=assignee, by=Actor.from_request(request))
    except ValidationError as exc:
        return _refused(request, incident, person, exc)
    who = "nobody" if assignee is None else ("you" if assignee == request.user else assignee)
    return _done(request, incident, person, f"Follow-up assigned to {who}.")
