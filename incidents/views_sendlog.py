"""Staff web UI for send log imports: upload a file, watch it load, fetch its error report.

Each view names its permission, parses input, calls one service and renders.
The progress page polls a fragment of itself with htmx once a second; without
JavaScript it refreshes itself (a <noscript> meta refresh) until the import ends.
"""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from incidents import services
from incidents.actors import Actor
from incidents.forms_audience import SendLogUploadForm, add_validation_error
from incidents.models import SendLogImport
from incidents.services.sendlog import error_report_name

IMPORTS_PAGE_SIZE = 25
_USED_TOKENS = "used_form_tokens"


def _fresh_token() -> str:
    return secrets.token_urlsafe(16)


def _spend_token(request: HttpRequest, token: str) -> bool:
    """False when this rendered form was sent before (a double click, a resubmit)."""
    used = request.session.get(_USED_TOKENS, [])
    if token in used:
        return False
    request.session[_USED_TOKENS] = [*used, token][-50:]
    return True


def _render_imports(request: HttpRequest, form: SendLogUploadForm | None) -> HttpResponse:
    paginator = Paginator(SendLogImport.objects.select_related("created_by"), IMPORTS_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    ctx = {"form": form, "page": page, "imports": page.object_list}
    return render(request, "sendlog/imports.html", ctx)


@require_safe
@permission_required("incidents.view_sendlogimport", raise_exception=True)
def sendlog_imports(request: HttpRequest) -> HttpResponse:
    """Permission: incidents.view_sendlogimport (the upload form: incidents.import_sendlog)."""
    form = None
    if request.user.has_perm("incidents.import_sendlog"):
        form = SendLogUploadForm(initial={"token": _fresh_token()})
    return _render_imports(request, form)


@require_POST
@permission_required("incidents.import_sendlog", raise_exception=True)
def sendlog_import_start(request: HttpRequest) -> HttpResponse:
    """Permission: incidents.import_sendlog. Stores the file, queues the import."""
    form = SendLogUploadForm(request.POST, request.FILES)
    if form.is_valid():
        if not _spend_token(request, form.cleaned_data["token"]):
            form.add_error(
                None,
                "This form was sent already, so the file was not imported again. "
                "Its import is in the list below.",
            )
        else:
            try:
                imp = services.sendlog_import_start(
                    uploaded_file=form.cleaned_data["file"],
                    file_format=form.cleaned_data["file_format"],
                    column_map=form.column_map(),
                    by=Actor.from_request(request),
                )
            except ValidationError as exc:
                add_validation_error(form, exc)
            else:
                messages.success(request, f"“{imp.file_name}” uploaded: the import has started.")
                return redirect("incidents:sendlog-import", import_id=imp.pk)
    form.data = form.data.copy()
    form.data["token"] = _fresh_token()  # correcting the form and sending it again is fine
    return _render_imports(request, form)


@require_safe
@permission_required("incidents.view_sendlogimport", raise_exception=True)
def sendlog_import(request: HttpRequest, import_id: int) -> HttpResponse:
    """Permission: incidents.view_sendlogimport. Live progress, then the outcome."""
    imp = get_object_or_404(SendLogImport.objects.select_related("created_by"), pk=import_id)
    finished = imp.status in (SendLogImport.Status.DONE, SendLogImport.Status.FAILED)
    ctx = {"imp": imp, "finished": finished, "percent": round(imp.progress * 100)}
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "sendlog/_import_progress.html" if partial else "sendlog/import_detail.html"
    response = render(request, template, ctx)
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_safe
@permission_required("incidents.import_sendlog", raise_exception=True)
def sendlog_import_errors(request: HttpRequest, import_id: int) -> FileResponse:
    """Permission: incidents.import_sendlog: the report quotes the file's rows, addresses too.

    Served from MEDIA_ROOT by this view only; the path comes from the import's
    id, never from the request or a stored string.
    """
    imp = get_object_or_404(SendLogImport, pk=import_id)
    path = Path(settings.MEDIA_ROOT) / error_report_name(imp)
    if not imp.error_report or not path.is_file():
        raise Http404("This import has no error report.")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"sendlog-import-{imp.pk}-errors.csv",
        content_type="text/csv; charset=utf-8",
    )
