"""Staff web UI for evidence packs: the Evidence tab of an incident.

Request a pack (format; pseudonymised, or with addresses and a reason), watch
it being built (htmx polls the row's fragment every 2 s; without JavaScript a
<noscript> refresh), list earlier packs with their expiry, download a zip.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_safe

from incidents.access import get_incident_for, require
from incidents.actors import Actor
from incidents.export import services
from incidents.models import EvidenceExport

EXPORT_EVIDENCE = "incidents.export_evidence"
EXPORT_PII = "incidents.export_pii"


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        label="Format",
        choices=EvidenceExport.Format.choices,
        help_text="CSV and JSON Lines hold every file of the pack and the report; "
        "PDF holds the printable report only.",
    )
    pii = forms.BooleanField(
        label="Include addresses and names (not pseudonymised)", required=False
    )
    reason = forms.CharField(
        label="Why are the addresses needed?",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required with addresses; kept in the audit trail and in the pack.",
    )

    def __init__(self, *args, may_export_pii: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not may_export_pii:
            del self.fields["pii"]
            del self.fields["reason"]


def _page(request, incident, form) -> HttpResponse:
    exports = incident.evidence_exports.select_related("created_by")[:50]
    running = any(e.status in ("queued", "running") for e in exports)
    ctx = {"incident": incident, "form": form, "exports": exports, "running": running}
    ctx["tab"] = "evidence"
    return render(request, "incidents/evidence.html", ctx)


@require_http_methods(["GET", "POST"])
def evidence(request: HttpRequest, reference: str) -> HttpResponse:
    """Permission: incidents.export_evidence (with addresses: incidents.export_pii too)."""
    incident = get_incident_for(request.user, reference, EXPORT_EVIDENCE)
    may_export_pii = request.user.has_perm(EXPORT_PII)
    if request.method == "POST" and request.POST.get("pii") and not may_export_pii:
        require(request.user, EXPORT_PII)  # never quietly turned into a pseudonymised pack
    form = ExportForm(request.POST or None, may_export_pii=may_export_pii)
    if request.method == "POST" and form.is_valid():
        try:
            export = services.export_request(
                incident=incident,
                fmt=form.cleaned_data["format"],
                pii=form.cleaned_data.get("pii", False),
                reason=form.cleaned_data.get("reason", ""),
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc)
        else:
            messages.success(request, f"Pack #{export.pk} requested: it is being built.")
            return redirect("incidents:evidence", reference=incident.reference)
    return _page(request, incident, form)


@require_safe
def evidence_export(request: HttpRequest, reference: str, export_id: int) -> HttpResponse:
    """Permission: incidents.export_evidence. One pack's row, polled while it is built."""
    incident = get_incident_for(request.user, reference, EXPORT_EVIDENCE)
    export = get_object_or_404(incident.evidence_exports.select_related("created_by"), pk=export_id)
    response = render(request, "incidents/evidence_row.html", {"incident": incident, "e": export})
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_safe
def evidence_download(request: HttpRequest, reference: str, export_id: int) -> FileResponse:
    """Permission: incidents.export_evidence; a pack with addresses: incidents.export_pii."""
    incident = get_incident_for(request.user, reference, EXPORT_EVIDENCE)
    export = get_object_or_404(incident.evidence_exports, pk=export_id)
    if export.pii:
        require(request.user, EXPORT_PII)
    if export.is_expired():
        messages.error(request, f"Pack #{export.pk} has expired and its files are deleted.")
        response = _page(request, incident, ExportForm(may_export_pii=False))
        response.status_code = 410
        return response
    try:
        path = services.export_download(export=export, by=Actor.from_request(request))
    except ValidationError as exc:
        raise Http404(" ".join(exc.messages)) from exc
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=path.name, content_type="application/zip"
    )
