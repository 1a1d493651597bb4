"""Staff web UI for the suppression list: search it, add to it, import a file, lift an entry.

Each view names its permission, parses input, calls one service or selector
and renders. Lifting a suppression (the address may be e-mailed again) is for
the Admin role only, and always needs a reason.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from campaigns import selectors, services
from campaigns.models import Suppression
from incidents.actors import Actor
from incidents.forms_audience import add_validation_error, read_text_upload
from incidents.paging import capped_count, keyset_page

PAGE_SIZE = 50
COUNT_CAP = 10_000
MAX_FILE_BYTES = 100 * 1024**2

# --- Forms (small and only used here) ------------------------------------------------


class SuppressionFilterForm(forms.Form):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=320,
        widget=forms.SearchInput(attrs={"placeholder": "Address or part of it"}),
    )
    reason = forms.ChoiceField(
        label="Reason", required=False, choices=[("", "Any reason"), *Suppression.Reason.choices]
    )

    def criteria(self) -> dict:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return {"search": (data.get("q") or "").strip(), "reason": data.get("reason") or ""}


class SuppressionAddForm(forms.Form):
    address = forms.CharField(
        label="Address",
        max_length=320,
        error_messages={"required": "Give the address to suppress."},
    )
    reason = forms.ChoiceField(label="Reason", choices=Suppression.Reason.choices)
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=2_000,
        help_text="Where the request came from, such as a ticket number.",
    )


class SuppressionImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="A header line with an “address” (or “email”) column; optional “reason” "
        "and “note” columns.",
        error_messages={"required": "Choose a CSV file to upload."},
    )
    default_reason = forms.ChoiceField(
        label="Reason for rows without one",
        choices=Suppression.Reason.choices,
        initial=Suppression.Reason.UNSUBSCRIBED,
    )

    def clean_file(self) -> str:
        return read_text_upload(self.cleaned_data["file"], limit=MAX_FILE_BYTES)


class SuppressionLiftForm(forms.Form):
    reason = forms.CharField(
        label="Why may this address be e-mailed again?",
        max_length=2_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded in the audit trail, such as “Customer re-subscribed, ticket 4411”.",
        error_messages={"required": "Say why this address may be e-mailed again."},
    )


# --- Views ------------------------------------------------------------------------------


def _render_list(
    request: HttpRequest,
    *,
    add_form: SuppressionAddForm | None = None,
    import_form: SuppressionImportForm | None = None,
    status: int = 200,
) -> HttpResponse:
    filters = SuppressionFilterForm(request.GET or None)
    criteria = filters.criteria()
    qs = selectors.suppression_list(**criteria)
    page = keyset_page(qs, request.GET, size=PAGE_SIZE, descending=True)
    can_add = request.user.has_perm("campaigns.add_suppression")
    ctx = {
        "filters": filters,
        "filtered": any(criteria.values()),
        "page": page,
        "suppressions": page.rows,
        "matches": capped_count(qs, COUNT_CAP),
        "count_cap": COUNT_CAP,
        "add_form": add_form or (SuppressionAddForm() if can_add else None),
        "import_form": import_form or (SuppressionImportForm() if can_add else None),
    }
    return render(request, "campaigns/suppressions.html", ctx, status=status)


@require_safe
@permission_required("campaigns.view_suppression", raise_exception=True)
def suppression_list(request: HttpRequest) -> HttpResponse:
    """Permission: campaigns.view_suppression."""
    return _render_list(request)


@require_POST
@permission_required("campaigns.add_suppression", raise_exception=True)
def suppression_add(request: HttpRequest) -> HttpResponse:
    """Permission: campaigns.add_suppression. Suppresses one address by hand."""
    form = SuppressionAddForm(request.POST)
    if form.is_valid():
        try:
            suppression, created = services.suppression_add(
                address=form.cleaned_data["address"],
                reason=form.cleaned_data["reason"],
                note=form.cleaned_data["note"],
                source=Suppression.Source.MANUAL,
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            if created:
                messages.success(request, f"{suppression.address} is suppressed.")
            else:
                messages.info(
                    request,
                    f"{suppression.address} was already suppressed "
                    f"({suppression.get_reason_display()}); nothing changed.",
                )
            return redirect("campaigns:suppressions")
    return _render_list(request, add_form=form)


@require_POST
@permission_required("campaigns.add_suppression", raise_exception=True)
def suppression_import(request: HttpRequest) -> HttpResponse:
    """Permission: campaigns.add_suppression. Suppresses every address in a CSV file."""
    form = SuppressionImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            result = services.suppression_import(
                text=form.cleaned_data["file"],
                default_reason=form.cleaned_data["default_reason"],
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            return render(request, "campaigns/suppression_import_result.html", {"result": result})
    return _render_list(request, import_form=form)


@require_http_methods(["GET", "HEAD", "POST"])
@permission_required("campaigns.delete_suppression", raise_exception=True)
def suppression_lift(request: HttpRequest, suppression_id: int) -> HttpResponse:
    """Permission: campaigns.delete_suppression (Admin). GET asks why; POST lifts."""
    suppression = Suppression.objects.filter(pk=suppression_id).first()
    if suppression is None:
        if request.method != "POST":
            raise Http404("No such suppression.")
        messages.error(request, "That suppression is not on the list: it was lifted already.")
        return redirect("campaigns:suppressions")
    form = SuppressionLiftForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.suppression_remove(
                suppression=suppression,
                reason=form.cleaned_data["reason"],
                by=Actor.from_request(request),
            )
        except ValidationError as exc:
            add_validation_error(form, exc)
        else:
            messages.success(request, f"{suppression.address} may be e-mailed again.")
            return redirect("campaigns:suppressions")
    return render(
        request, "campaigns/suppression_lift.html", {"suppression": suppression, "form": form}
    )
