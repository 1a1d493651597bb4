"""ESP tracking webhooks at /webhooks/<esp>/tracking/, parsed by anymail.

They are public URLs: each request must carry the WEBHOOK_SECRET as HTTP basic
auth (anymail checks it) and, where the ESP signs its webhooks, a valid signature.
Inbound-mail webhooks are not mounted: Amends receives no mail.
"""

from functools import wraps

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailConfigurationError, AnymailImproperlyInstalled
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponseForbidden, HttpResponseNotFound
from django.urls import URLPattern

app_name = "webhooks"


def _secret_required(view):
    # anymail only warns when no secret is set; an open webhook would let anyone
    # forge bounces and suppress real customers, so without a secret it is shut.
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
            return HttpResponseForbidden("Webhooks are disabled until WEBHOOK_SECRET is set.")
        try:
            return view(request, *args, **kwargs)
        except (AnymailConfigurationError, AnymailImproperlyInstalled):
            # An ESP whose signing key (or client library) is not set up has no webhook here.
            return HttpResponseNotFound("This ESP's webhook is not configured on this server.")

    return guarded


def _public(pattern: URLPattern) -> URLPattern:
    # LoginRequiredMiddleware would redirect the ESP to a login page; the
    # webhook's own authentication (basic auth + signature) applies instead.
    view = login_not_required(_secret_required(pattern.callback))
    return URLPattern(pattern.pattern, view, pattern.default_args, pattern.name)


# SendinBlue's URLs are anymail's deprecated aliases of Brevo's; Brevo's are mounted.
_DEPRECATED = {"sendinblue_tracking_webhook"}

urlpatterns = [
    _public(pattern)
    for pattern in anymail_urls.urlpatterns
    if (pattern.name.endswith("_tracking_webhook") or pattern.name == "mandrill_webhook")
    and pattern.name not in _DEPRECATED
]
