"""Staff web UI for watching an incident's contact progress: the dashboard and reconciliation.

The dashboard reads the incident's ContactSnapshot (incidents/dashboard.py), one
row, so it renders in milliseconds at a million people; htmx fetches its live
part again every DASHBOARD_POLL_SECONDS, and the page says how old the figures
are. The unconfirmed list and its CSV page by delivery id; the CSV is streamed.
"""

import csv
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_safe

from incidents import selectors_contact as selectors
from incidents.access import get_incident_for, require
from incidents.dashboard import dashboard_for
from incidents.dashboard_chart import chart
from incidents.models import Incident
from incidents.models.contact import ContactStatus
from incidents.paging import capped_count, keyset_page

VIEW_PERM = "incidents.view_affectedperson"
DELIVERY_VIEW_PERM = "campaigns.view_delivery"
PAGE_SIZE = 50
COUNT_CAP = 10_000
CSV_CHUNK = 2_000


def _share(part: int, whole: int) -> int:
    return part * 100 // whole if whole else 0


def _live_context(incident: Incident) -> dict:
    board = dashboard_for(incident=incident)
    data = board.data
    ctx = {
        "incident": incident,
        "board": board,
        "data": data,
        "poll_seconds": settings.DASHBOARD_POLL_SECONDS,
        "age_seconds": int((timezone.now() - board.as_of).total_seconds()) if board.as_of else None,
    }
    if not board.ready:
        return ctx
    funnel = data["funnel"]
    affected = funnel["affected"]
    ctx["funnel"] = [
        {"key": "affected", "label": "Affected", "n": affected, "share": 100 if affected else 0},
        {
            "key": "sent",
            "label": "Sent",
            "n": funnel["sent"],
            "share": _share(funnel["sent"], affected),
        },
        {
            "key": "delivered",
            "label": "Delivered",
            "n": funnel["delivered"],
            "share": _share(funnel["delivered"], affected),
        },
        {
            "key": "contacted",
            "label": "Contacted",
            "n": funnel["contacted"],
            "share": _share(funnel["contacted"], affected),
        },
    ]
    ctx["statuses"] = [
        {"status": s, "label": label, "n": data["by_status"].get(s, 0)}
        for s, label in ContactStatus.choices
    ]
    ctx["segments"] = [
        {
            **seg,
            "cells": [{"status": s, "n": seg["by_status"].get(s, 0)} for s in ContactStatus.values],
        }
        for seg in data["segments"]
    ]
    ctx["deliveries"] = [(status, n) for status, n in data["deliveries"].items() if n]
    ctx["methods"] = [(m, n) for m, n in data["methods"].items() if n]
    ctx["events"] = sorted(data["events"].items())
    ttc = data["time_to_contact"]
    ctx["percentiles"] = [
        (f"{p[1:]}th", timedelta(seconds=ttc[p]) if ttc.get(p) is not None else None)
        for p in ("p50", "p90", "p99")
    ]
    ctx["chart"] = chart(data["chart"])
    ctx["done"] = data["by_status"].get("contacted", 0) + data["by_status"].get("waived", 0)
    ctx["open"] = affected - ctx["done"]
    return ctx


@require_safe
def dashboard(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.view_affectedperson. Funnel, counts, time to contact, activity."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    ctx = {**_live_context(incident), "tab": "dashboard"}
    return render(request, "incidents/dashboard.html", ctx)


@require_safe
def dashboard_live(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.view_affectedperson. The dashboard's live part (htmx polls it)."""
    incident = get_incident_for(request.user, reference, VIEW_PERM)
    response = render(request, "incidents/dashboard_live.html", _live_context(incident))
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- Reconciliation ------------------------------------------------------------------------------


@require_safe
def unconfirmed(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: campaigns.view_delivery. Sent, and no ESP word since the window."""
    incident = get_incident_for(request.user, reference, DELIVERY_VIEW_PERM)
    require(request.user, VIEW_PERM)  # the list shows addresses
    qs = selectors.unconfirmed_deliveries(incident=incident)
    page = keyset_page(qs, request.GET, size=PAGE_SIZE)
    ctx = {
        "incident": incident,
        "tab": "dashboard",
        "page": page,
        "deliveries": selectors.with_people(page.rows),
        "matches": capped_count(qs, COUNT_CAP),
        "count_cap": COUNT_CAP,
        "window_minutes": settings.RECONCILE_UNCONFIRMED_AFTER_MINUTES,
        "cutoff": selectors.unconfirmed_cutoff(),
    }
    return render(request, "incidents/unconfirmed.html", ctx)


def _cell(value) -> str:
    # A leading =, +, - or @ makes a spreadsheet run the cell as a formula.
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value: str) -> str:
        return value


UNCONFIRMED_COLUMNS = [
    "delivery_id",
    "campaign_id",
    "person_id",
    "address",
    "customer_id",
    "locale",
    "segment",
    "sent_at",
    "esp_message_id",
    "minutes_since_sent",
]


def unconfirmed_rows(incident: Incident):
    """The CSV's lines, header first, fetched in id-ordered chunks (no OFFSET, no cursor)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(UNCONFIRMED_COLUMNS)
    now = timezone.now()
    qs = selectors.unconfirmed_deliveries(incident=incident, now=now)
    after = 0
    while True:
        chunk = selectors.with_people(qs.filter(pk__gt=after)[:CSV_CHUNK])
        if not chunk:
            return
        for d in chunk:
            minutes = int((now - d.sent_at).total_seconds() // 60) if d.sent_at else ""
            yield writer.writerow(
                [
                    d.pk,
                    d.campaign_id,
                    d.person_id,
                    _cell(d.address),
                    _cell(d.person.customer_id),
                    _cell(d.locale),
                    _cell(d.person.segment.name),
                    d.sent_at.isoformat() if d.sent_at else "",
                    _cell(d.esp_message_id),
                    minutes,
                ]
            )
        after = chunk[-1].pk


@require_safe
def unconfirmed_csv(request: HttpRequest, reference: str) -> StreamingHttpResponse:
    """Permission: campaigns.view_delivery. Every unconfirmed delivery, streamed as CSV."""
    incident = get_incident_for(request.user, reference, DELIVERY_VIEW_PERM)
    require(request.user, VIEW_PERM)
    stamp = timezone.now().strftime("%Y%m%dT%H%MZ")
    response = StreamingHttpResponse(
        unconfirmed_rows(incident), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{incident.reference}-unconfirmed-{stamp}.csv"'
    )
    response["Cache-Control"] = "no-store"
    return response
