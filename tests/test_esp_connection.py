"""A sending thread's ESP connection reads the environment once, and still honours it.

requests, under anymail's HTTP backends, looks up proxies, the CA bundle and
~/.netrc in the environment on every call unless told otherwise; a sending
thread resolves them once when it opens its connection (campaigns/sending/esp.py).
These tests send through anymail's real Postmark backend to the local stub.
"""

import pytest
from django.core.mail import EmailMessage

from campaigns.sending.esp import open_mailer

REFUSED = "http://127.0.0.1:9"  # nothing listens there


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _send(backend, n: int = 1) -> int:
    return sum(
        backend.send_messages(
            [EmailMessage("Sorry", "We are sorry.", "care@retailer.example", [f"p{i}@example.com"])]
        )
        for i in range(n)
    )


def test_an_esp_reached_through_the_environments_proxy_still_is(
    postmark_stub, settings, monkeypatch
):
    # The ESP's host does not resolve: only the proxy (the stub, as a forward proxy) reaches it.
    settings.MAILERS = {"default": postmark_stub.mailer(api_url="http://esp.invalid/")}
    monkeypatch.setenv("HTTP_PROXY", postmark_stub.url)

    backend = open_mailer("default")
    try:
        assert _send(backend, 3) == 3
    finally:
        backend.close()
    assert (postmark_stub.proxied, postmark_stub.taken) == (3, 3)


def test_no_proxy_still_sends_straight_to_the_esp(postmark_stub, settings, monkeypatch):
    settings.MAILERS = {"default": postmark_stub.mailer()}
    monkeypatch.setenv("HTTP_PROXY", REFUSED)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    backend = open_mailer("default")
    try:
        assert _send(backend) == 1
    finally:
        backend.close()
    assert (postmark_stub.proxied, postmark_stub.taken) == (0, 1)


def test_the_environment_is_read_when_the_connection_opens_not_on_every_call(
    postmark_stub, settings, monkeypatch
):
    settings.MAILERS = {"default": postmark_stub.mailer()}
    backend = open_mailer("default")
    try:
        assert _send(backend) == 1
        # Were it read again, the next calls would go to a proxy that refuses them.
        monkeypatch.setenv("HTTP_PROXY", REFUSED)
        assert _send(backend, 2) == 2
    finally:
        backend.close()
    assert (postmark_stub.proxied, postmark_stub.taken) == (0, 3)
