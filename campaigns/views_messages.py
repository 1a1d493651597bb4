"""Staff web UI for the apology: draft it per segment, compare versions, preview, test, approve.

Each view names its permission (through get_incident_for, or `require` for a
second one), parses input with a form, calls one service or selector and
renders. Support drafts and asks for approval; Comms approves or rejects an
exact version; everyone with a role can read. Staff-written templates are only
ever rendered by campaigns.rendering, and the HTML part is shown only inside a
sandboxed iframe (`<iframe sandbox srcdoc>`, no scripts, an opaque origin).
"""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from campaigns import selectors, services
from campaigns.forms import (
    LOCALE,
    PART_LABELS,
    CompareForm,
    DecisionForm,
    MessageForm,
    PreviewForm,
    RejectForm,
    TestSendForm,
    locale_name,
    locales_after,
    parse_locales,
)
from campaigns.models import Message, MessageVersion, OutboxMessage
from campaigns.rendering import FILTERS, PLACEHOLDERS, RenderError, normalise_locale, render_version
from incidents import selectors as incident_selectors
from incidents.access import get_incident_for, require
from incidents.actors import Actor
from incidents.forms_audience import add_validation_error
from incidents.models import AffectedPerson, AuditEntry, Incident, Segment
from incidents.paging import keyset_page

VIEW_PERM = "campaigns.view_message"
VERSION_PERM = "campaigns.view_messageversion"
DRAFT_PERM = "campaigns.add_messageversion"
TEST_SEND_PERM = "campaigns.test_send_messageversion"
APPROVE_PERM = "campaigns.approve_messageversion"
OUTBOX_PERM = "campaigns.view_outboxmessage"

# A second press within this time is a double click, not a new request: it sends nothing.
ASK_AGAIN_AFTER = timedelta(minutes=10)
TEST_AGAIN_AFTER = timedelta(seconds=15)
STARTING_LOCALES = 10
SEARCH_RESULTS = 10
SAMPLE_SIZE = 5
OUTBOX_PAGE_SIZE = 50
SENDER_LABELS = {
    "sender_name": "Sender name",
    "sender_address": "Sender address",
    "reply_to": "Reply-to address",
    "fallback_locale": "Fallback language",
}


def _url(name: str, incident: Incident, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"reference": incident.reference, **kwargs})


def _version_url(name: str, version: MessageVersion) -> str:
    message = version.message
    return reverse(
        f"campaigns:{name}",
        kwargs={
            "reference": message.incident.reference,
            "segment_id": message.segment_id,
            "number": version.number,
        },
    )


def _segment_for(incident: Incident, segment_id: int) -> Segment:
    return get_object_or_404(Segment, pk=segment_id, incident=incident)


def _version_for(incident: Incident, segment_id: int, number: int) -> MessageVersion:
    message = get_object_or_404(
        Message.objects.select_related("incident", "segment"), incident=incident, segment=segment_id
    )
    try:
        version = selectors.version_get(message=message, number=number)
    except MessageVersion.DoesNotExist:
        raise Http404("No such version.") from None
    version.message = message  # with its segment, for the page's headings
    return version


def _head(incident: Incident, segment: Segment | None = None) -> dict:
    return {"incident": incident, "segment": segment, "tab": "messages"}


# --- Small view-specific reads ------------------------------------------------------------


def status_of(version: MessageVersion | None, state) -> dict:
    """Where a segment's message stands, in words: {kind, label, comments}."""
    if version is None:
        return {"kind": "none", "label": "No draft", "comments": []}
    n = version.number
    if state.rejected:
        comments = [d.comment for d in state.decisions if d.decision == "rejected"]
        return {"kind": "rejected", "label": f"Rejected v{n}", "comments": comments}
    if not state.content_intact:
        return {
            "kind": "rejected",
            "label": f"v{n} was altered after it was saved and cannot be approved",
            "comments": [],
        }
    if state.approved:
        return {"kind": "approved", "label": f"Approved v{n}", "comments": []}
    return {
        "kind": "awaiting",
        "label": f"Draft v{n} awaiting approval ({state.have} of {state.needed})",
        "comments": [],
    }


def decide_status(user, version: MessageVersion, state) -> dict:
    """Whether `user` may approve or reject `version` now, and if not, why: {can, why}."""
    if not user.has_perm(APPROVE_PERM):
        return {"can": False, "why": ""}
    if not state.is_latest:
        return {"can": False, "why": "A newer version replaced this one: decide on the latest."}
    written = selectors.chain_authors(version).get(user.pk)
    if written:
        numbers = ", ".join(str(n) for n in written)
        return {
            "can": False,
            "why": f"You wrote version {numbers} of this message, so you cannot approve or "
            "reject it: someone who wrote none of it must decide.",
        }
    mine = [d for d in state.decisions if d.approver == user.get_username()]
    if mine:
        when = timezone.localtime(mine[0].at).strftime("%-d %b %Y, %H:%M")
        return {"can": False, "why": f"You {mine[0].decision} this version on {when}."}
    if state.rejected:
        return {"can": False, "why": "This version was rejected; its author saves a new one."}
    if not state.content_intact:
        return {"can": False, "why": "This version was altered after it was saved."}
    return {"can": True, "why": ""}


def next_step(row: dict, user, incident: Incident) -> dict:
    """What to do next for one segment's message: {text, url, label}."""
    version, kind = row["version"], row["status"]["kind"]
    may_draft = user.has_perm(DRAFT_PERM)
    edit = _url("message-edit", incident, segment_id=row["segment"].pk)
    if kind == "none":
        if may_draft:
            return {"text": "Write the apology for this segment.", "url": edit, "label": "Write"}
        return {"text": "Waiting for Support to write the apology.", "url": "", "label": ""}
    page = _version_url("version", version)
    if kind == "rejected":
        if may_draft:
            return {"text": "Revise it: save a new version.", "url": edit, "label": "Revise"}
        return {"text": "Waiting for a new version.", "url": page, "label": "View"}
    if kind == "approved":
        return {"text": "Approved: ready to send.", "url": page, "label": "View"}
    if row["decide"]["can"]:
        return {"text": "Review it, then approve or reject.", "url": page, "label": "Review"}
    if may_draft:
        return {
            "text": "Preview it, send a test, and ask Comms for approval.",
            "url": page,
            "label": "Open",
        }
    return {"text": "Waiting for Comms to approve it.", "url": page, "label": "View"}


def segment_rows(incident: Incident, user, *, with_counts: bool = True) -> list[dict]:
    """One row per segment: its message's latest version, status and next step."""
    by_segment = {m.segment_id: m for m in selectors.message_list(incident=incident)}
    people = {}
    if with_counts:
        people = dict(
            AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True)
            .values_list("segment_id")
            .annotate(n=Count("id"))
            .order_by()
        )
    rows = []
    for segment in incident.segments.all():
        message = by_segment.get(segment.pk)
        version = selectors.version_latest(message=message) if message else None
        if version is not None:
            version.message = message
        state = selectors.version_approval_state(version) if version else None
        row = {
            "segment": segment,
            "people": people.get(segment.pk, 0),
            "message": message,
            "version": version,
            "state": state,
            "status": status_of(version, state),
            "decide": decide_status(user, version, state) if version else {"can": False},
        }
        row["next"] = next_step(row, user, incident)
        rows.append(row)
    return rows


def starting_locales(segment: Segment) -> list[str]:
    """A new message's languages: the fallback, then the languages of the segment's people."""
    fallback = normalise_locale(settings.MESSAGE_DEFAULT_FALLBACK_LOCALE)
    found = (
        AffectedPerson.objects.filter(segment=segment, removed_at__isnull=True)
        .exclude(locale="")
        .order_by()
        .values_list("locale", flat=True)
        .distinct()[:200]
    )
    languages = {normalise_locale(locale).split("-")[0] for locale in found}
    others = sorted(code for code in languages if LOCALE.match(code) and code != fallback)
    return [fallback, *others][:STARTING_LOCALES]


def approval_requests(version: MessageVersion):
    """When approval of `version` was asked for, newest first (from the audit trail)."""
    return AuditEntry.objects.filter(
        action="message.approval_requested",
        object_type="campaigns.messageversion",
        object_id=str(version.pk),
    ).order_by("-seq")


def _diff_blocks(a: MessageVersion, b: MessageVersion) -> list[dict]:
    blocks = []
    for change in selectors.version_diff(a, b):
        if change.locale:
            title = f"{locale_name(change.locale)} · {PART_LABELS[change.field]}"
        else:
            title = SENDER_LABELS.get(change.field, change.field)
        lines = []
        for i, line in enumerate(change.lines):
            if i < 2:
                kind = "file"
            elif line.startswith("@@"):
                kind = "hunk"
            elif line.startswith("+"):
                kind = "add"
            elif line.startswith("-"):
                kind = "del"
            else:
                kind = "same"
            lines.append({"kind": kind, "text": line})
        blocks.append({"title": title, "lines": lines})
    return blocks


# --- The Messages tab and a segment's history ------------------------------------------------


@require_safe
def message_list(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: campaigns.view_message. One row per segment with its message's status."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    ctx = {**_head(incident), "rows": segment_rows(incident, request.user)}
    return render(request, "campaigns/messages/list.html", ctx)


@require_safe
def message_detail(request: HttpRequest, reference: str, segment_id: int) -> HttpResponse:
    """Permission: campaigns.view_messageversion. Every version, newest first, and a compare form."""
    incident = get_incident_for(request.user, reference, VERSION_PERM)
    segment = _segment_for(incident, segment_id)
    message = selectors.message_for_segment(segment=segment)
    rows, compare = [], None
    if message is not None:
        for version in selectors.version_list(message=message):
            version.message = message
            state = selectors.version_approval_state(version)
            rows.append({"version": version, "state": state, "status": status_of(version, state)})
        numbers = sorted(row["version"].number for row in rows)
        if len(numbers) > 1:
            compare = CompareForm(numbers=numbers, initial={"a": numbers[-2], "b": numbers[-1]})
    ctx = {
        **_head(incident, segment),
        "heading": f"Apology for “{segment.name}”",
        "message": message,
        "rows": rows,
        "compare": compare,
    }
    return render(request, "campaigns/messages/history.html", ctx)


@require_safe
def message_diff(request: HttpRequest, reference: str, segment_id: int) -> HttpResponse:
    """Permission: campaigns.view_messageversion. ?a=1&b=3; by default the latest two."""
    incident = get_incident_for(request.user, reference, VERSION_PERM)
    segment = _segment_for(incident, segment_id)
    message = get_object_or_404(Message, segment=segment)
    numbers = list(message.versions.order_by("number").values_list("number", flat=True))
    default = {"a": numbers[-2] if len(numbers) > 1 else numbers[0], "b": numbers[-1]}
    form = CompareForm(request.GET or None, numbers=numbers, initial=default)
    chosen = form.cleaned_data if form.is_bound and form.is_valid() else default
    a = selectors.version_get(message=message, number=chosen["a"])
    b = selectors.version_get(message=message, number=chosen["b"])
    ctx = {
        **_head(incident, segment),
        "heading": f"Changes from version {a.number} to version {b.number}",
        "message": message,
        "form": form,
        "a": a,
        "b": b,
        "blocks": _diff_blocks(a, b) if a.number != b.number else [],
    }
    return render(request, "campaigns/messages/diff.html", ctx)


# --- Drafting -------------------------------------------------------------------------------


def _saved_already(form: MessageForm, message: Message | None) -> MessageVersion | None:
    """The latest version, when it already holds exactly this draft (the form was sent twice)."""
    latest = selectors.version_latest(message=message) if message else None
    if latest is None:
        return None
    data = form.cleaned_data
    try:
        draft = services.draft_clean(
            sender_name=data["sender_name"],
            sender_address=data["sender_address"],
            reply_to=data["reply_to"],
            fallback_locale=data["fallback_locale"],
            content=form.content(),
        )
    except ValidationError:
        return None
    return latest if draft.same_as(latest) else None


def _changed_locales(request: HttpRequest, locales: list[str]) -> MessageForm:
    """The form again after "add a language" or "remove", keeping what was typed."""
    new, problem = locales_after(request.POST, locales)
    data = request.POST.copy()
    data["locales"] = " ".join(new)
    if not problem:
        data["new_locale"] = ""
    if data.get("fallback_locale") not in new:
        data["fallback_locale"] = new[0]
    form = MessageForm(data, locales=new)
    if problem:
        form.add_error("new_locale", problem)
    return form


@require_http_methods(["GET", "HEAD", "POST"])
def message_edit(request: HttpRequest, reference: str, segment_id: int) -> HttpResponse:
    """Permission: campaigns.add_messageversion. Every save is a new version, never an overwrite."""
    incident = get_incident_for(request.user, reference, DRAFT_PERM)
    segment = _segment_for(incident, segment_id)
    message = selectors.message_for_segment(segment=segment)
    latest = selectors.version_latest(message=message) if message else None
    if request.method != "POST":
        locales = (
            sorted(latest.locales, key=lambda code: code != latest.fallback_locale)
            if latest
            else starting_locales(segment)
        )
        form = MessageForm(
            initial=MessageForm.initial_for(latest, locales=locales), locales=locales
        )
    else:
        locales = parse_locales(request.POST.get("locales", "")) or starting_locales(segment)
        changing = (
            "remove_locale" in request.POST
            or "add_locale" in request.POST
            or bool((request.POST.get("new_locale") or "").strip())  # Enter in "Add a language"
        )
        form = (
            _changed_locales(request, locales)
            if changing
            else MessageForm(request.POST, locales=locales)
        )
        if not changing and form.is_valid():
            data = form.cleaned_data
            try:
                version = services.version_create(
                    by=Actor.from_request(request),
                    message=message,
                    segment=None if message else segment,
                    based_on=data["based_on"],
                    sender_name=data["sender_name"],
                    sender_address=data["sender_address"],
                    reply_to=data["reply_to"],
                    fallback_locale=data["fallback_locale"],
                    content=form.content(),
                )
            except ValidationError as exc:
                same = None if hasattr(exc, "error_dict") else _saved_already(form, message)
                if same is not None:
                    messages.info(
                        request,
                        f"Version {same.number} already holds exactly this; nothing new was saved.",
                    )
                    return redirect(_version_url("version", same))
                form.add_service_error(exc)
            else:
                messages.success(
                    request,
                    f"Saved version {version.number}. Preview it, then ask Comms for approval.",
                )
                return redirect(_version_url("version", version))
    verb = "Edit" if latest else "Write"
    ctx = {
        **_head(incident, segment),
        "heading": f"{verb} the apology for “{segment.name}”",
        "form": form,
        "latest": latest,
        "next_number": (latest.number if latest else 0) + 1,
        "placeholders": [(f"{{{{ {name} }}}}", about) for name, about in PLACEHOLDERS.items()],
        "filters": [name for name in FILTERS if name != "default"],
        "default_example": "{{ first_name|default('customer') }}",
    }
    return render(request, "campaigns/messages/edit.html", ctx)


# --- One version: read it, preview it, test it ------------------------------------------------


def _render_version_page(
    request: HttpRequest, version: MessageVersion, *, reject_form: RejectForm | None = None
) -> HttpResponse:
    user = request.user
    state = selectors.version_approval_state(version)
    decide = decide_status(user, version, state)
    requests_ = list(approval_requests(version).select_related("actor")[:5])
    may_ask = (
        user.has_perm(DRAFT_PERM)
        and state.is_latest
        and state.content_intact
        and not state.rejected
        and not state.approved
    )
    if decide["can"] and reject_form is None:
        reject_form = RejectForm(initial={"content_hash": version.content_hash})
    ctx = {
        **_head(version.message.incident, version.message.segment),
        "heading": f"Version {version.number} of the apology for “{version.message.segment.name}”",
        "version": version,
        "state": state,
        "status": status_of(version, state),
        "decide": decide,
        "reject_form": reject_form if decide["can"] else None,
        "may_ask": may_ask,
        "requests": requests_,
        "variants": [
            {"locale": code, "name": locale_name(code), **version.content[code]}
            for code in version.locales
        ],
        "warnings": selectors.version_warnings(version=version),
        "test_sends": version.test_sends.select_related("by")[:10]
        if user.has_perm("campaigns.view_testsend")
        else [],
        "latest_number": version.message.version_count,
    }
    return render(request, "campaigns/messages/version.html", ctx)


@require_safe
def version_detail(request: HttpRequest, reference: str, segment_id: int, number: int):
    """Permission: campaigns.view_messageversion. The exact text, its hash and its approvals."""
    incident = get_incident_for(request.user, reference, VERSION_PERM)
    return _render_version_page(request, _version_for(incident, segment_id, number))


def _preview_person(segment: Segment, incident: Incident, choice: dict) -> dict:
    """The person to render for (picked, found or sampled), and the search results."""
    people = incident_selectors.affected_list(incident=incident, segment_id=segment.pk)
    person, notice, found, sample = None, "", [], []
    if choice["person"]:
        person = people.filter(pk=choice["person"]).first()
        if person is None:
            notice = "That person is not on this segment's list; showing sample values instead."
    if choice["q"]:
        found = list(
            incident_selectors.affected_list(
                incident=incident, segment_id=segment.pk, search=choice["q"]
            )[:SEARCH_RESULTS]
        )
        if choice["q"].isdigit():
            found = list(people.filter(pk=int(choice["q"]))) + [
                p for p in found if p.pk != int(choice["q"])
            ]
        if not found:
            notice = f"Nobody in “{segment.name}” matches “{choice['q']}”."
    if choice["sample"]:
        sample = selectors.affected_sample(segment=segment, count=SAMPLE_SIZE)
        if not sample:
            notice = f"Nobody is in “{segment.name}” yet; showing sample values."
        elif person is None:
            person = sample[0]
    return {"person": person, "notice": notice, "found": found, "sample": sample}


@require_safe
def version_preview(request: HttpRequest, reference: str, segment_id: int, number: int):
    """Permission: campaigns.view_messageversion and incidents.view_affectedperson.

    Renders the version as a chosen affected person (or a random one, or sample
    values) would get it. The HTML is shown only in a sandboxed srcdoc iframe.
    """
    incident = get_incident_for(request.user, reference, VERSION_PERM)
    require(request.user, "incidents.view_affectedperson")
    version = _version_for(incident, segment_id, number)
    form = PreviewForm(request.GET or None)
    choice = form.choice()
    who = _preview_person(version.message.segment, incident, choice)
    locale = choice["locale"] if choice["locale"] in version.content else ""
    rendered, problem = None, ""
    try:
        rendered = render_version(version=version, person=who["person"], locale=locale or None)
    except RenderError as exc:
        problem = " ".join(exc.messages)
    ctx = {
        **_head(incident, version.message.segment),
        "heading": f"Preview of version {version.number}",
        "version": version,
        "form": form,
        "choice": choice,
        "locale": locale,
        "locales": [(code, locale_name(code)) for code in version.locales],
        "rendered": rendered,
        "rendered_name": locale_name(rendered.locale) if rendered else "",
        "problem": problem,
        "warnings": selectors.version_warnings(version=version),
        **who,
    }
    return render(request, "campaigns/messages/preview.html", ctx)


@require_http_methods(["GET", "HEAD", "POST"])
def version_test_send(request: HttpRequest, reference: str, segment_id: int, number: int):
    """Permission: campaigns.test_send_messageversion. To seed-list addresses only."""
    incident = get_incident_for(request.user, reference, TEST_SEND_PERM)
    version = _version_for(incident, segment_id, number)
    form = TestSendForm(
        request.POST if request.method == "POST" else None,
        version_locales=version.locales,
        initial={
            "addresses": "\n".join(settings.MESSAGE_TEST_SEED_LIST),
            "locales": version.locales,
        },
    )
    back = _version_url("version-test-send", version)
    if request.method == "POST" and form.is_valid():
        recent = version.test_sends.filter(
            by=request.user, created_at__gte=timezone.now() - TEST_AGAIN_AFTER
        ).exists()
        if recent:
            messages.info(
                request,
                "You sent this test a moment ago (the form was sent twice); not sent again.",
            )
            return redirect(back)
        try:
            sent = services.version_test_send(
                version=version,
                addresses=form.cleaned_data["addresses"],
                locales=form.cleaned_data["locales"],
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            emails = f"{sent.message_count} test email{'s' if sent.message_count != 1 else ''}"
            messages.success(
                request,
                f"Sent {emails} ({', '.join(sent.locales)}) to the seed list. "
                "They are marked as tests and count nowhere.",
            )
            return redirect(back)
    ctx = {
        **_head(incident, version.message.segment),
        "heading": f"Send a test of version {version.number}",
        "version": version,
        "form": form,
        "seed_list": settings.MESSAGE_TEST_SEED_LIST,
        "test_sends": version.test_sends.select_related("by")[:10],
    }
    return render(request, "campaigns/messages/test_send.html", ctx)


# --- Approval ---------------------------------------------------------------------------


@require_POST
def version_request_approval(request: HttpRequest, reference: str, segment_id: int, number: int):
    """Permission: campaigns.add_messageversion. Emails the Comms users who may decide."""
    incident = get_incident_for(request.user, reference, DRAFT_PERM)
    version = _version_for(incident, segment_id, number)
    back = _version_url("version", version)
    asked = approval_requests(version).filter(created_at__gte=timezone.now() - ASK_AGAIN_AFTER)
    if last := asked.first():
        when = timezone.localtime(last.created_at).strftime("%H:%M")
        messages.info(
            request,
            f"{last.actor_label} asked for approval of version {version.number} at {when}; "
            "the approvers were emailed then. Nothing was sent again.",
        )
        return redirect(back)
    try:
        approvers = services.approval_request(version=version, by=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        names = ", ".join(user.get_username() for user in approvers)
        messages.success(request, f"Asked {names} to approve version {version.number}.")
    return redirect(back)


@require_http_methods(["GET", "HEAD", "POST"])
def version_approve(request: HttpRequest, reference: str, segment_id: int, number: int):
    """Permission: campaigns.approve_messageversion. GET asks to confirm; a POST from there approves."""
    incident = get_incident_for(request.user, reference, APPROVE_PERM)
    version = _version_for(incident, segment_id, number)
    back = _version_url("version", version)
    if request.method == "POST" and request.POST.get("confirm") != "approve":
        return redirect(_version_url("version-approve", version))
    if request.method == "POST":
        form = DecisionForm(request.POST)
        if not form.is_valid() or form.cleaned_data["content_hash"] != version.content_hash:
            messages.error(
                request,
                "Nothing was approved: the form did not name this version's content hash. "
                "Open the version again and approve what you see there.",
            )
            return redirect(back)
        try:
            services.version_approve(
                version=version,
                by=Actor.from_request(request),
                comment=form.cleaned_data["comment"],
            )
        except ValidationError as exc:
            messages.error(request, f"Nothing was approved: {' '.join(exc.messages)}")
        else:
            state = selectors.version_approval_state(version)
            if state.approved:
                done = "It is approved and ready to send."
            else:
                done = f"It needs {state.missing} more approval{'s' if state.missing != 1 else ''}."
            messages.success(
                request,
                f"You approved version {version.number} ({state.have} of {state.needed}). {done}",
            )
        return redirect(back)
    state = selectors.version_approval_state(version)
    ctx = {
        **_head(incident, version.message.segment),
        "heading": f"Approve version {version.number}?",
        "version": version,
        "state": state,
        "decide": decide_status(request.user, version, state),
        "form": DecisionForm(initial={"content_hash": version.content_hash}),
        "variants": [
            {"locale": code, "name": locale_name(code), **version.content[code]}
            for code in version.locales
        ],
        "warnings": selectors.version_warnings(version=version),
    }
    return render(request, "campaigns/messages/approve.html", ctx)


@require_POST
def version_reject(request: HttpRequest, reference: str, segment_id: int, number: int):
    """Permission: campaigns.approve_messageversion. A comment is required; it goes to the author."""
    incident = get_incident_for(request.user, reference, APPROVE_PERM)
    version = _version_for(incident, segment_id, number)
    back = _version_url("version", version)
    form = RejectForm(request.POST)
    if form.is_valid() and form.cleaned_data["content_hash"] != version.content_hash:
        form.add_error(None, "Nothing was rejected: the form did not name this version's hash.")
    if form.is_valid():
        try:
            services.version_reject(
                version=version,
                by=Actor.from_request(request),
                comment=form.cleaned_data["comment"],
            )
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                messages.error(request, f"Nothing was rejected: {' '.join(exc.messages)}")
                return redirect(back)
            add_validation_error(form, exc)
        else:
            messages.success(
                request,
                f"You rejected version {version.number}. Its author was emailed your comment.",
            )
            return redirect(back)
    return _render_version_page(request, version, reject_form=form)


# --- The sandbox outbox -----------------------------------------------------------------------


@require_safe
@permission_required(OUTBOX_PERM, raise_exception=True)
def outbox(request: HttpRequest) -> HttpResponse:
    """Permission: campaigns.view_outboxmessage. What the sandbox mailer kept, newest first."""
    page = keyset_page(
        OutboxMessage.objects.all(), request.GET, size=OUTBOX_PAGE_SIZE, descending=True
    )
    return render(request, "campaigns/messages/outbox.html", {"page": page, "emails": page.rows})


@require_safe
@permission_required(OUTBOX_PERM, raise_exception=True)
def outbox_message(request: HttpRequest, message_id: int) -> HttpResponse:
    """Permission: campaigns.view_outboxmessage. One kept email: headers, text and HTML."""
    email = get_object_or_404(OutboxMessage, pk=message_id)
    return render(request, "campaigns/messages/outbox_message.html", {"email": email})
