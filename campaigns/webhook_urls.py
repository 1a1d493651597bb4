"""ESP tracking webhooks at /webhooks/<esp>/tracking/, parsed by anymail (docs/tracking.md).

They are public URLs: each request must carry one of the WEBHOOK_SECRETs as
HTTP basic auth (anymail checks it, any of several while rotating) and, where
the ESP signs its webhooks and its key is configured, a valid signature.
A refused request stores nothing. An accepted one stores its events in one
INSERT after anymail has parsed them all, and the apply job does the rest.
Inbound-mail webhooks are not mounted: Amends receives no mail.
"""

from functools import wraps

from anymail import urls as anymail_urls
from anymail.exceptions import AnymailConfigurationError, AnymailImproperlyInstalled
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponseForbidden, HttpResponseNotFound
from django.urls import URLPattern

from campaigns.tracking import collecting, events_store

app_name = "webhooks"


def _secret_required(view):
    # anymail only warns when no secret is set; an open webhook would let anyone
    # forge bounces and suppress real customers, so without a secret it is shut.
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
            return HttpResponseForbidden("Webhooks are disabled until WEBHOOK_SECRET is set.")
        with collecting() as rows:
            try:
                response = view(request, *args, **kwargs)
            except (AnymailConfigurationError, AnymailImproperlyInstalled):
                # An ESP whose signing key (or client library) is not set up has no webhook here.
                return HttpResponseNotFound("This ESP's webhook is not configured on this server.")
        if response.status_code < 300:
            # One INSERT for the whole request. If it fails, the error is a 500 and the
            # ESP sends the batch again; what was stored is skipped by its key.
            events_store(rows=rows)
        return response

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
