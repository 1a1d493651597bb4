"""Staff web UI for sending: launch an approved apology, watch it go out, control it, decide.

Each view names its permission (through get_incident_for, or `require` for a
second one), parses input with a form, calls one service or selector and
renders. Support launches, pauses, resumes, cancels and decides on uncertain
deliveries; every role can watch. A refusal is shown as the service words it and
changes nothing; a second press of a button (a double click, a stale page) is
recognised and changes nothing either. The campaign page polls a fragment of
itself with htmx every 2 s; without JavaScript it refreshes itself.
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from campaigns import selectors, services
from campaigns.forms_campaigns import DeliveryFilterForm, LaunchForm, PauseForm, ResolveForm
from campaigns.models import Campaign, Delivery, Message, MessageVersion
from campaigns.models.sending import UNFINISHED
from campaigns.views_messages import segment_rows
from incidents.access import get_incident_for
from incidents.actors import Actor
from incidents.forms_audience import add_validation_error
from incidents.models import Incident, Segment
from incidents.paging import keyset_page

VIEW_PERM = "campaigns.view_campaign"
DELIVERY_VIEW_PERM = "campaigns.view_delivery"
LAUNCH_PERM = "campaigns.launch_campaign"
CONTROL_PERM = "campaigns.control_campaign"
RESOLVE_PERM = "campaigns.resolve_delivery"

PAGE_SIZE = 50
POLL_SECONDS = 2
# A second launch of the same segment by the same person this soon is a double click.
LAUNCH_AGAIN_AFTER = timedelta(seconds=30)
_USED_TOKENS = "used_launch_tokens"
Status = Delivery.Status


def _url(name: str, incident: Incident, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"reference": incident.reference, **kwargs})


def _campaign_url(name: str, campaign: Campaign) -> str:
    return reverse(
        f"campaigns:{name}",
        kwargs={"reference": campaign.incident.reference, "campaign_id": campaign.pk},
    )


def _campaign_for(incident: Incident, campaign_id: int) -> Campaign:
    campaign = get_object_or_404(
        Campaign.objects.select_related("segment", "version__message", "launched_by"),
        pk=campaign_id,
        incident=incident,
    )
    campaign.incident = incident
    return campaign


def _version_for(incident: Incident, segment_id: int, number: int) -> MessageVersion:
    message = get_object_or_404(
        Message.objects.select_related("incident", "segment"), incident=incident, segment=segment_id
    )
    try:
        version = selectors.version_get(message=message, number=number)
    except MessageVersion.DoesNotExist:
        raise Http404("No such version.") from None
    version.message = message
    return version


def _head(incident: Incident, campaign: Campaign | None = None, **extra) -> dict:
    """What every sending page's heading needs; `extra` may bring the campaign itself."""
    return {"incident": incident, "campaign": campaign, "tab": "sending", **extra}


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _duration(seconds: float) -> str:
    """“about 40 s”, “about 3 min”, “about 2 h 5 min”."""
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"about {seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def _unfinished(campaign: Campaign) -> bool:
    return campaign.status in UNFINISHED


# --- The Sending tab ---------------------------------------------------------------------------


def _campaign_next(campaign: Campaign, counts: dict, top_up: int, user) -> dict:
    """What to do next about one campaign: {text, url, label, primary}."""
    page = _campaign_url("campaign", campaign)
    uncertain = counts.get(Status.UNCERTAIN, 0)
    if uncertain:
        may = user.has_perm(RESOLVE_PERM)
        return {
            "text": f"{_plural(uncertain, 'delivery', 'deliveries')} may or may not have gone out: "
            "someone must decide.",
            "url": _campaign_url("campaign-uncertain", campaign),
            "label": "Decide" if may else "View",
            "primary": may,
        }
    if campaign.status == Campaign.Status.RUNNING:
        return {"text": "Sending now.", "url": page, "label": "Watch", "primary": False}
    if campaign.status == Campaign.Status.PAUSED:
        return {
            "text": f"Paused: {campaign.paused_reason}",
            "url": page,
            "label": "Open",
            "primary": user.has_perm(CONTROL_PERM),
        }
    if top_up and user.has_perm(LAUNCH_PERM):
        return {
            "text": f"{_plural(top_up, 'person', 'people')} added since launch "
            f"{'has' if top_up == 1 else 'have'} no apology yet: top up this campaign.",
            "url": page + "#top-up",
            "label": "Top up",
            "primary": True,
        }
    if campaign.status == Campaign.Status.CANCELLED:
        return {"text": "Cancelled.", "url": page, "label": "View", "primary": False}
    return {"text": "Done.", "url": page, "label": "View", "primary": False}


def _segment_next(row: dict, campaigns: list[Campaign], uncontacted: int, user) -> dict:
    """What to do next about one segment's apology: {text, url, label, primary, again_url}."""
    version, incident = row["version"], row["segment"].incident
    may_launch = user.has_perm(LAUNCH_PERM)
    none = {"url": "", "label": "", "primary": False, "again_url": ""}
    if row["status"]["kind"] != "approved":
        return none | {
            "text": f"{row['status']['label']}: only an approved version can be sent.",
            "url": _url("message", incident, segment_id=row["segment"].pk)
            if version
            else _url("messages", incident),
            "label": "Messages",
        }
    launch = reverse(
        "campaigns:campaign-launch",
        kwargs={
            "reference": incident.reference,
            "segment_id": row["segment"].pk,
            "number": version.number,
        },
    )
    busy = next((c for c in campaigns if _unfinished(c)), None)
    if busy is not None:
        return none | {
            "text": f"Campaign #{busy.pk} is {busy.get_status_display().lower()}.",
            "url": _campaign_url("campaign", busy),
            "label": "Open",
        }
    wait = "Waiting for Support to launch it."
    if not campaigns:
        text = f"Approved v{version.number}: ready to send to {_plural(row['people'], 'person', 'people')}."
        if not may_launch:
            return none | {"text": f"{text} {wait}"}
        return none | {"text": text, "url": launch, "label": "Launch", "primary": True}
    again = f"{launch}?send_again=1" if may_launch else ""
    topped = (
        campaigns[0].version_id == version.pk and campaigns[0].status != Campaign.Status.CANCELLED
    )
    if uncontacted and not topped:
        text = (
            f"{_plural(uncontacted, 'person', 'people')} in no campaign yet: "
            f"launch v{version.number} for them."
        )
        if not may_launch:
            return none | {"text": f"{text} {wait}"}
        return none | {
            "text": text,
            "url": launch,
            "label": "Launch",
            "primary": True,
            "again_url": again,
        }
    if uncontacted:
        return none | {
            "text": f"{_plural(uncontacted, 'person', 'people')} in no campaign yet: "
            f"top up campaign #{campaigns[0].pk}.",
            "url": _campaign_url("campaign", campaigns[0]) + "#top-up",
            "label": "Open",
            "again_url": again,
        }
    return none | {"text": "Everyone in this segment is in a campaign.", "again_url": again}


@require_safe
def sending(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: campaigns.view_campaign. Each segment's next step, and every campaign."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    campaigns = list(selectors.campaign_list(incident=incident))
    for campaign in campaigns:
        campaign.incident = incident
    counts = selectors.delivery_counts(incident=incident)
    uncontacted = selectors.uncontacted_by_segment(incident=incident)
    by_segment: dict[int, list[Campaign]] = {}
    for campaign in campaigns:
        by_segment.setdefault(campaign.segment_id, []).append(campaign)
    segments = []
    for row in segment_rows(incident, request.user):
        row["segment"].incident = incident
        mine = by_segment.get(row["segment"].pk, [])
        row["next"] = _segment_next(row, mine, uncontacted.get(row["segment"].pk, 0), request.user)
        segments.append(row)
    latest_version = {r["segment"].pk: r["version"] for r in segments}
    rows = []
    for campaign in campaigns:
        mine = counts.get(campaign.pk, {})
        total = sum(mine.values())
        pending = sum(mine.get(s, 0) for s in (Status.QUEUED, Status.SENDING))
        newest = by_segment[campaign.segment_id][0] == campaign
        latest = latest_version.get(campaign.segment_id)
        top_up = 0
        if newest and latest is not None and latest.pk == campaign.version_id:
            top_up = uncontacted.get(campaign.segment_id, 0)
        rows.append(
            {
                "campaign": campaign,
                "counts": [(Status(s).label, n) for s, n in sorted(mine.items()) if n],
                "total": total,
                "done": total - pending,
                "next": _campaign_next(campaign, mine, top_up, request.user),
            }
        )
    ctx = _head(incident, heading="Sending", segments=segments, rows=rows)
    return render(request, "campaigns/sending/list.html", ctx)


# --- Launch -------------------------------------------------------------------------------------


def _launch_refusal(version: MessageVersion, segment: Segment) -> str:
    """Why this version cannot be launched now, in words; "" when it can (the service decides)."""
    state = selectors.version_approval_state(version)
    if not state.is_latest:
        latest = version.message.version_count
        return (
            f"Version {version.number} is not the latest; version {latest} replaced it. "
            "Launch the latest version once it is approved."
        )
    if not state.content_intact:
        return (
            f"Version {version.number} was altered after it was saved, so its approval no longer "
            "holds. It cannot be sent."
        )
    if state.rejected:
        return f"Version {version.number} was rejected: only an approved version can be sent."
    if not state.approved:
        return (
            f"Version {version.number} is not approved yet ({state.have} of {state.needed} "
            "approvals): only an approved version can be sent."
        )
    busy = Campaign.objects.filter(segment=segment, status__in=UNFINISHED).first()
    if busy is not None:
        return (
            f"Campaign #{busy.pk} for “{segment.name}” is {busy.get_status_display().lower()}. "
            "Finish or cancel it first; people added since its launch get a top-up from it."
        )
    return ""


def _expected(preview: selectors.LaunchPreview) -> str:
    return f"{preview.recipients}:{preview.suppressed}:{preview.resends}"


def _spend_token(request: HttpRequest, token: str) -> None:
    request.session[_USED_TOKENS] = [*request.session.get(_USED_TOKENS, []), token][-50:]


def _carry(form: LaunchForm, **values: str) -> None:
    """The confirmation carries the settings, what it showed, and a fresh one-time token."""
    form.data = form.data.copy()
    for name, value in (values | {"token": secrets.token_urlsafe(16)}).items():
        form.data[name] = value


def _sent_twice(
    request: HttpRequest, segment: Segment, version: MessageVersion, data: dict
) -> tuple[Campaign | None] | None:
    """A confirmation sent before (a double click, a resubmitted page, a second tab).

    Its one-time token was spent, or the same person launched the same version for
    the same segment (plainly, or as "send again") moments ago. Returns a 1-tuple
    with that campaign (or None), or None when this is a first launch.
    """
    recent = (
        Campaign.objects.filter(
            segment=segment,
            version=version,
            is_resend=data["send_again"],
            launched_by=request.user,
            launched_at__gte=timezone.now() - LAUNCH_AGAIN_AFTER,
        )
        .exclude(status=Campaign.Status.CANCELLED)
        .order_by("-launched_at")
        .first()
    )
    used = bool(data["token"]) and data["token"] in request.session.get(_USED_TOKENS, [])
    return (recent,) if recent is not None or used else None


def _nobody_left(preview: selectors.LaunchPreview, segment: Segment) -> str:
    if preview.recipients:
        return ""
    if not preview.people:
        return f"“{segment.name}” has no one to send to."
    return (
        f"Everyone in “{segment.name}” ({_plural(preview.people, 'person', 'people')}) is "
        "already in a campaign of this incident. To send it to them again, tick “send again” "
        "and say why."
    )


@require_http_methods(["GET", "HEAD", "POST"])
def campaign_launch(request: HttpRequest, reference: str, segment_id: int, number: int):
    """Permission: campaigns.launch_campaign. The settings, then a confirmation of who gets what.

    The first post shows the confirmation: how many people get which version, how
    many are suppressed and skipped. Only a post from there (confirm=launch, with
    the hash and numbers it showed) launches.
    """
    incident = get_incident_for(request.user, reference, LAUNCH_PERM)
    version = _version_for(incident, segment_id, number)
    segment = version.message.segment
    refusal = _launch_refusal(version, segment)
    initial = {
        "rate_limit": settings.SEND_RATE_LIMIT,
        "batch_size": settings.SEND_BATCH_SIZE,
        "mailer": "default",
        "send_again": request.GET.get("send_again") == "1",
    }
    form = LaunchForm(request.POST if request.method == "POST" else None, initial=initial)
    ctx = _head(
        incident,
        segment=segment,
        version=version,
        heading=f"Send version {version.number} to “{segment.name}”",
        form=form,
        refusal=refusal,
        step="settings",
        show_mailer=len(settings.MAILERS) > 1,
    )
    if request.method != "POST" or not form.is_valid():
        return render(request, "campaigns/sending/launch.html", ctx)
    data = form.cleaned_data
    confirming = request.POST.get("confirm") == "launch"
    if confirming and (earlier := _sent_twice(request, segment, version, data)):
        messages.info(
            request,
            "You launched this a moment ago (the form was sent twice); nothing was launched again.",
        )
        return redirect(
            _campaign_url("campaign", earlier[0]) if earlier[0] else _url("sending", incident)
        )
    if refusal:
        return render(request, "campaigns/sending/launch.html", ctx)

    preview = selectors.launch_preview(segment=segment, send_again=data["send_again"])
    if problem := _nobody_left(preview, segment):
        form.add_error(None, problem)
        return render(request, "campaigns/sending/launch.html", ctx)
    ctx |= {"preview": preview, "step": "confirm"}
    if not confirming:
        _carry(form, content_hash=version.content_hash, expected=_expected(preview))
        return render(request, "campaigns/sending/launch.html", ctx)
    if data["content_hash"] != version.content_hash:
        form.add_error(None, "Nothing was launched: this is not the text you confirmed.")
        ctx["step"] = "settings"
        return render(request, "campaigns/sending/launch.html", ctx)
    if data["expected"] != _expected(preview):
        ctx["changed"] = True
        _carry(form, expected=_expected(preview))
        return render(request, "campaigns/sending/launch.html", ctx)

    _spend_token(request, data["token"])
    try:
        campaign = services.campaign_launch(
            version=version,
            segment=segment,
            by=Actor.from_request(request),
            rate_limit=data["rate_limit"],
            batch_size=data["batch_size"],
            mailer=data["mailer"],
            send_again=data["send_again"],
            resend_reason=data["resend_reason"],
        )
    except ValidationError as exc:
        add_validation_error(form, exc)
        ctx |= {"step": "settings", "failed": True}
        return render(request, "campaigns/sending/launch.html", ctx)
    counts = selectors.campaign_progress(campaign=campaign).counts
    skipped = counts[Status.SUPPRESSED]
    getting = _plural(sum(counts.values()) - skipped, "person", "people")
    suppressed = _plural(skipped, "suppressed address", "suppressed addresses")
    messages.success(
        request,
        f"Launched campaign #{campaign.pk}: {getting} get version {version.number}; "
        f"{suppressed} skipped.",
    )
    campaign.incident = incident
    return redirect(_campaign_url("campaign", campaign))


# --- One campaign: progress and control ---------------------------------------------------------


def _progress_context(campaign: Campaign) -> dict:
    progress = selectors.campaign_progress(campaign=campaign)
    eta = ""
    if progress.eta_seconds is not None:
        eta = _duration(progress.eta_seconds)
        if progress.eta_basis == "limit":
            eta += (
                f" at the rate limit of {campaign.rate_limit}/s (nothing sent in the last minute)"
            )
    states = [
        {"status": status, "label": label, "n": progress.counts[status]}
        for status, label in Status.choices
        if progress.counts[status] or status in (Status.QUEUED, Status.SENT)
    ]
    return {
        "campaign": campaign,
        "progress": progress,
        "states": states,
        "rate": f"{progress.rate:.1f}",
        "eta": eta,
        "live": _unfinished(campaign),
        "poll_seconds": POLL_SECONDS,
    }


@require_safe
def campaign_detail(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.view_campaign. Live progress, the settings and the controls."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    campaign = _campaign_for(incident, campaign_id)
    top_up = 0
    if campaign.status != Campaign.Status.CANCELLED and request.user.has_perm(LAUNCH_PERM):
        newest = Campaign.objects.filter(segment=campaign.segment_id).order_by("-created_at", "-id")
        if newest.values_list("pk", flat=True).first() == campaign.pk:
            top_up = selectors.uncontacted_by_segment(incident=incident).get(campaign.segment_id, 0)
    ctx = _head(
        incident,
        heading=f"Campaign #{campaign.pk}: “{campaign.segment.name}”",
        pause_form=PauseForm(),
        top_up=top_up,
        **_progress_context(campaign),
    )
    return render(request, "campaigns/sending/campaign.html", ctx)


@require_safe
def campaign_progress(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.view_campaign. The live part of the campaign page (htmx polls it).

    When the campaign's status is no longer the one the page was drawn with
    (?shown=), htmx reloads the whole page, so the buttons match the new status.
    """
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    campaign = _campaign_for(incident, campaign_id)
    response = render(request, "campaigns/sending/_progress.html", _progress_context(campaign))
    shown = request.GET.get("shown")
    if request.htmx and shown and shown != campaign.status:
        response["HX-Refresh"] = "true"
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
def campaign_pause(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.control_campaign. Stops sending within seconds; the reason is optional."""
    incident = get_incident_for(request.user, reference, CONTROL_PERM)
    campaign = _campaign_for(incident, campaign_id)
    back = _campaign_url("campaign", campaign)
    form = PauseForm(request.POST)
    if campaign.status == Campaign.Status.PAUSED:
        messages.info(request, f"Campaign #{campaign.pk} is already paused. Nothing changed.")
        return redirect(back)
    if not form.is_valid():
        messages.error(request, f"Nothing changed: {' '.join(form.errors['reason'])}")
        return redirect(back)
    try:
        services.campaign_pause(
            campaign=campaign, by=Actor.from_request(request), reason=form.cleaned_data["reason"]
        )
    except ValidationError as exc:
        messages.error(request, f"Nothing changed: {' '.join(exc.messages)}")
    else:
        messages.success(
            request,
            f"Paused campaign #{campaign.pk}. Workers stop within "
            f"{_plural(round(settings.SEND_CONTROL_CHECK_SECONDS) or 1, 'second')}; messages "
            "already handed to the ESP finish. Nothing more is sent until you resume.",
        )
    return redirect(back)


@require_POST
def campaign_resume(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.control_campaign. Sends what is still queued, and nothing else."""
    incident = get_incident_for(request.user, reference, CONTROL_PERM)
    campaign = _campaign_for(incident, campaign_id)
    back = _campaign_url("campaign", campaign)
    if campaign.status in (Campaign.Status.RUNNING, Campaign.Status.COMPLETED):
        messages.info(
            request,
            f"Campaign #{campaign.pk} is already {campaign.get_status_display().lower()}. "
            "Nothing changed.",
        )
        return redirect(back)
    # Counted first: in embedded mode the rest is sent as soon as the resume commits.
    queued = selectors.campaign_progress(campaign=campaign).counts[Status.QUEUED]
    try:
        services.campaign_resume(campaign=campaign, by=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, f"Nothing changed: {' '.join(exc.messages)}")
    else:
        messages.success(
            request,
            f"Resumed campaign #{campaign.pk}: sending the "
            f"{_plural(queued, 'delivery', 'deliveries')} still queued. Nobody who already got "
            "it is sent it again.",
        )
    return redirect(back)


@require_http_methods(["GET", "HEAD", "POST"])
def campaign_cancel(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.control_campaign. GET asks to confirm; a POST from there cancels."""
    incident = get_incident_for(request.user, reference, CONTROL_PERM)
    campaign = _campaign_for(incident, campaign_id)
    back = _campaign_url("campaign", campaign)
    if request.method == "POST" and not _unfinished(campaign):
        messages.info(
            request,
            f"Campaign #{campaign.pk} is already {campaign.get_status_display().lower()}. "
            "Nothing changed.",
        )
        return redirect(back)
    if request.method == "POST" and request.POST.get("confirm") != "cancel":
        return redirect(_campaign_url("campaign-cancel", campaign))
    if request.method == "POST":
        try:
            services.campaign_cancel(campaign=campaign, by=Actor.from_request(request))
        except ValidationError as exc:
            messages.error(request, f"Nothing changed: {' '.join(exc.messages)}")
        else:
            cancelled = selectors.campaign_progress(campaign=campaign).counts[Status.CANCELLED]
            messages.success(
                request,
                f"Cancelled campaign #{campaign.pk}: "
                f"{_plural(cancelled, 'delivery', 'deliveries')} will never be sent. Messages "
                "already handed to the ESP stay sent. This cannot be undone.",
            )
        return redirect(back)
    ctx = _head(
        incident,
        heading=f"Cancel campaign #{campaign.pk}?",
        **_progress_context(campaign),
    )
    return render(request, "campaigns/sending/cancel.html", ctx)


@require_POST
def campaign_top_up(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.launch_campaign. People added since launch get the same approved text."""
    incident = get_incident_for(request.user, reference, LAUNCH_PERM)
    campaign = _campaign_for(incident, campaign_id)
    back = _campaign_url("campaign", campaign)
    try:
        added = services.campaign_top_up(campaign=campaign, by=Actor.from_request(request))
    except ValidationError as exc:
        messages.error(request, f"Nothing was added: {' '.join(exc.messages)}")
        return redirect(back)
    if added:
        messages.success(
            request,
            f"Added {_plural(added, 'person', 'people')} to campaign #{campaign.pk}, under the "
            "same approval.",
        )
    else:
        messages.info(request, "Everyone in the segment is already in a campaign. Nothing changed.")
    return redirect(back)


# --- Deliveries ---------------------------------------------------------------------------------


def _render_uncertain(
    request: HttpRequest,
    incident: Incident,
    campaign: Campaign,
    *,
    bound: tuple[int, ResolveForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    page = keyset_page(
        selectors.delivery_list(campaign=campaign, status=Status.UNCERTAIN),
        request.GET,
        size=PAGE_SIZE,
    )
    may = request.user.has_perm(RESOLVE_PERM)
    rows = []
    for delivery in page.rows:
        form = (
            bound[1] if bound and bound[0] == delivery.pk else ResolveForm(prefix=f"d{delivery.pk}")
        )
        rows.append({"delivery": delivery, "form": form if may else None})
    ctx = _head(
        incident,
        campaign,
        heading=f"Uncertain deliveries of campaign #{campaign.pk}",
        page=page,
        rows=rows,
        may_resolve=may,
    )
    return render(request, "campaigns/sending/uncertain.html", ctx, status=status)


@require_safe
def campaign_uncertain(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.view_delivery. Deliveries nobody knows were sent, each to decide on."""
    incident = get_incident_for(request.user, reference, DELIVERY_VIEW_PERM)
    return _render_uncertain(request, incident, _campaign_for(incident, campaign_id))


@require_POST
def delivery_resolve(
    request: HttpRequest, reference: str, campaign_id: int, delivery_id: int
) -> HttpResponse:
    """Permission: campaigns.resolve_delivery. Resend or mark sent, with a reason (audited)."""
    incident = get_incident_for(request.user, reference, RESOLVE_PERM)
    campaign = _campaign_for(incident, campaign_id)
    delivery = get_object_or_404(Delivery, pk=delivery_id, campaign=campaign)
    back = _campaign_url("campaign-uncertain", campaign)
    if delivery.status != Status.UNCERTAIN:
        messages.info(
            request,
            f"Delivery #{delivery.pk} was decided already: it is "
            f"{delivery.get_status_display().lower()} now. Nothing changed.",
        )
        return redirect(back)
    form = ResolveForm(request.POST, prefix=f"d{delivery.pk}")
    if not form.is_valid():
        return _render_uncertain(request, incident, campaign, bound=(delivery.pk, form))
    try:
        services.delivery_resolve_uncertain(
            delivery=delivery,
            decision=form.cleaned_data["decision"],
            by=Actor.from_request(request),
            reason=form.cleaned_data["reason"],
        )
    except ValidationError as exc:
        messages.error(request, f"Nothing changed: {' '.join(exc.messages)}")
        return redirect(back)
    if form.cleaned_data["decision"] == "resend":
        done = "goes back to the queue and will be sent again"
    else:
        done = "is counted as sent"
    messages.success(request, f"Delivery #{delivery.pk} {done}. Your reason is in the audit trail.")
    return redirect(back)


@require_safe
def campaign_deliveries(request: HttpRequest, reference: str, campaign_id: int) -> HttpResponse:
    """Permission: campaigns.view_delivery. Every delivery, by state and address; keyset pages."""
    incident = get_incident_for(request.user, reference, DELIVERY_VIEW_PERM)
    campaign = _campaign_for(incident, campaign_id)
    form = DeliveryFilterForm(request.GET or None)
    criteria = form.criteria()
    page = keyset_page(
        selectors.delivery_list(campaign=campaign, **criteria), request.GET, size=PAGE_SIZE
    )
    ctx = _head(
        incident,
        campaign,
        heading=f"Deliveries of campaign #{campaign.pk}",
        form=form,
        criteria=criteria,
        page=page,
        deliveries=page.rows,
    )
    return render(request, "campaigns/sending/deliveries.html", ctx)
