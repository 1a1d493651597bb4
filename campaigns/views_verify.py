"""The public verification page: a customer checks that an apology is really from us.

No login. A code comes from the form (POST, with CSRF) or from a link
(`/verify/?code=…`). Every look-up counts against the client's rate limit; the
answer is the same page and status (200) whether or not the code exists
(campaigns/verification.py keeps the work the same too).
"""

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from campaigns.verification import INPUT_MAX_CHARS, verify_code
from config import ratelimit


class VerifyForm(forms.Form):
    code = forms.CharField(
        label="Verification code",
        max_length=INPUT_MAX_CHARS,
        error_messages={"required": "Enter the code from the email."},
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "aria-describedby": "code-help",
            }
        ),
    )


def _page(request, *, form, result=None, status=200):
    if form.is_bound and form.errors:
        form.fields["code"].widget.attrs.update(
            {"aria-invalid": "true", "aria-describedby": "code-help code-error"}
        )
    context = {"form": form, "result": result, "company_name": settings.COMPANY_NAME}
    response = render(request, "verify/verify.html", context, status=status)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@login_not_required  # public: customers have no account
@never_cache  # an answer for one code must never be served from a cache for another
@require_http_methods(["GET", "HEAD", "POST"])
def verify(request):
    data = request.POST if request.method == "POST" else request.GET
    if request.method != "POST" and not data.get("code", "").strip():
        return _page(request, form=VerifyForm())
    form = VerifyForm(data)
    if not form.is_valid():
        # Empty or over-long input: a form error, nothing looked up, nothing counted.
        return _page(request, form=form)
    verdict = ratelimit.hit(
        scope="verify",
        request=request,
        limit=settings.VERIFY_RATE_LIMIT,
        window=settings.VERIFY_RATE_WINDOW_SECONDS,
    )
    if not verdict.allowed:
        response = render(
            request,
            "verify/rate_limited.html",
            {
                "company_name": settings.COMPANY_NAME,
                "minutes": max(1, -(-verdict.retry_after // 60)),
            },
            status=429,
        )
        response.headers["Retry-After"] = str(verdict.retry_after)
        response.headers["X-Robots-Tag"] = "noindex"
        return response
    return _page(request, form=form, result=verify_code(form.cleaned_data["code"]))
