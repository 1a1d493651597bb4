"""An ESP connection for a sending thread, opened once and kept for its job."""

import requests
from django.core.mail import mailers


def open_mailer(alias: str):
    """The `MAILERS[alias]` backend, opened, with its HTTP client's environment read once."""
    backend = mailers[alias]
    backend.open()
    settle_environment(backend)
    return backend


def settle_environment(backend) -> None:
    """Read what the environment says about the ESP's URL once, not on every call.

    anymail's HTTP backends send through a requests session, which by default
    looks at the environment on every call: the proxies (every environment
    variable, lower-cased, and NO_PROXY matched against the host), the CA bundle,
    and ~/.netrc on disk. That was about 0.2 ms of CPU a message, an eighth of
    an HTTP call's (docs/performance.md, session 6). The ESP's URL is the same for every call
    of a connection, so its proxies and CA bundle are resolved here and the
    session stops looking. A .netrc is not read: every ESP backend sends its own
    credentials. Backends without a requests session (SMTP, Amazon SES through
    boto3, the sandbox) are left as they are.
    """
    session = getattr(backend, "session", None)
    url = getattr(backend, "api_url", None)
    if not isinstance(session, requests.Session) or not session.trust_env or not url:
        return
    # requests' own reading of the environment for this URL, as it does before each call.
    found = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies, session.verify = found["proxies"], found["verify"]
    session.trust_env = False
