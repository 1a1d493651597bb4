"""ESP webhooks feed the send log and the suppression list, through anymail's real views.

Events for mail that is not one of our deliveries still reach the company's send
log: Amends is also its send-log receiver. The request stores the events; the
apply job (run by `run_jobs`, on rq with REDIS_URL) applies them.
"""

import base64
import hashlib
import hmac
import json

import pytest

from campaigns.models import Suppression
from incidents.models import SendLogEntry

SECRET = "esp:webhook-secret-1"


@pytest.fixture(autouse=True)
def _jobs_run(client, run_jobs, monkeypatch):
    # Each request's apply job runs right after it, as a worker would run it.
    post = client.post

    def post_and_apply(*args, **kwargs):
        with run_jobs():
            return post(*args, **kwargs)

    monkeypatch.setattr(client, "post", post_and_apply)


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": [SECRET, "esp:rotated-out-soon"],
        "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-signing-key",
    }


def _auth(secret=SECRET):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def _postmark(client, payload, **headers):
    return client.post(
        "/webhooks/postmark/tracking/",
        json.dumps(payload),
        content_type="application/json",
        **(headers or _auth()),
    )


def postmark_delivery(message_id="pm-1", email="Cust1@Example.com"):
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": email,
        "Tag": "registry",
        "DeliveredAt": "2026-11-28T10:00:00Z",
        "Details": "Delivered",
        "Metadata": {"has_registry": "false"},
    }


def postmark_bounce(kind="HardBounce", message_id="pm-2", email="gone@example.com"):
    return {
        "RecordType": "Bounce",
        "ID": 42,
        "Type": kind,
        "TypeCode": 1,
        "Name": kind,
        "Tag": "registry",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message",
        "Details": "smtp;550 5.1.1 user unknown",
        "Email": email,
        "From": "care@retailer.example",
        "BouncedAt": "2026-11-28T10:05:00Z",
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Someone just bought a gift from your baby registry!",
    }


def test_an_event_for_an_unknown_message_adds_it_to_the_send_log(client, db):
    assert _postmark(client, postmark_delivery()).status_code == 200
    entry = SendLogEntry.objects.get(message_id="pm-1")
    assert entry.address == "cust1@example.com" and entry.status == "delivered"
    assert entry.source == "webhook"


def test_a_later_event_updates_the_latest_status(client, db):
    _postmark(client, postmark_delivery(message_id="pm-3"))
    _postmark(client, postmark_bounce(message_id="pm-3", email="cust1@example.com"))
    assert SendLogEntry.objects.get(message_id="pm-3").status == "bounced"


def test_a_hard_bounce_suppresses_the_address(client, db):
    _postmark(client, postmark_bounce("HardBounce"))
    suppression = Suppression.objects.get(address="gone@example.com")
    assert suppression.reason == "hard_bounce" and suppression.source == "webhook"


def test_a_soft_bounce_does_not_suppress(client, db):
    _postmark(client, postmark_bounce("SoftBounce", email="full@example.com"))
    assert not Suppression.objects.exists()


def test_a_spam_complaint_suppresses_the_address(client, db):
    payload = postmark_bounce("SpamComplaint", email="angry@example.com")
    payload["RecordType"] = "SpamComplaint"
    _postmark(client, payload)
    assert Suppression.objects.get(address="angry@example.com").reason == "complaint"


@pytest.mark.parametrize(
    "headers",
    [{}, _auth("esp:wrong"), {"HTTP_AUTHORIZATION": "Bearer nope"}],
    ids=["no auth", "wrong secret", "wrong scheme"],
)
def test_a_webhook_without_the_secret_is_refused_and_changes_nothing(client, db, headers):
    response = client.post(
        "/webhooks/postmark/tracking/",
        json.dumps(postmark_bounce()),
        content_type="application/json",
        **headers,
    )
    assert response.status_code in (400, 401, 403)
    assert not SendLogEntry.objects.exists() and not Suppression.objects.exists()


def test_the_previous_secret_still_works_while_rotating(client, db):
    assert (
        _postmark(client, postmark_delivery(), **_auth("esp:rotated-out-soon")).status_code == 200
    )


def test_webhooks_are_shut_when_no_secret_is_configured(client, db, settings):
    settings.ANYMAIL = {k: v for k, v in settings.ANYMAIL.items() if k != "WEBHOOK_SECRET"}
    assert _postmark(client, postmark_delivery()).status_code == 403
    assert not SendLogEntry.objects.exists()


def _mailgun(client, event_data, *, key="mailgun-signing-key"):
    timestamp, token = "1764324000", "a" * 50
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    payload = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }
    return client.post(
        "/webhooks/mailgun/tracking/",
        json.dumps(payload),
        content_type="application/json",
        **_auth(),
    )


def mailgun_failed(severity="permanent"):
    return {
        "event": "failed",
        "severity": severity,
        "timestamp": 1764324000.5,
        "id": "mg-event-1",
        "recipient": "Nobody@Example.net",
        "reason": "bounce" if severity == "permanent" else "generic",
        "message": {"headers": {"message-id": "20261128.1@mg.retailer.example"}},
        "delivery-status": {"code": 550, "message": "5.1.1 user unknown", "description": ""},
        "tags": ["registry"],
        "user-variables": {},
    }


def test_a_mailgun_permanent_failure_is_logged_and_suppressed(client, db):
    assert _mailgun(client, mailgun_failed()).status_code == 200
    entry = SendLogEntry.objects.get(message_id="20261128.1@mg.retailer.example")
    assert entry.status == "bounced" and entry.tags == ";registry;"
    assert Suppression.objects.get(address="nobody@example.net").reason == "hard_bounce"


def test_a_mailgun_event_with_a_forged_signature_is_refused(client, db):
    assert _mailgun(client, mailgun_failed(), key="not-the-key").status_code == 400
    assert not SendLogEntry.objects.exists() and not Suppression.objects.exists()


def test_a_mailgun_temporary_failure_is_a_deferral_not_a_suppression(client, db):
    _mailgun(client, mailgun_failed("temporary"))
    assert SendLogEntry.objects.get().status == "deferred"
    assert not Suppression.objects.exists()


def _webhook_urls():
    from django.urls import reverse

    from campaigns.webhook_urls import urlpatterns

    return [reverse(f"webhooks:{p.name}") for p in urlpatterns if "(" not in str(p.pattern)]


@pytest.mark.parametrize("url", _webhook_urls())
def test_every_webhook_url_refuses_a_request_without_the_secret(client, db, url):
    response = client.post(url, json.dumps(postmark_bounce()), content_type="application/json")
    assert response.status_code in (400, 401, 403, 404), response.status_code
    assert not SendLogEntry.objects.exists() and not Suppression.objects.exists()


def test_an_older_event_arriving_late_does_not_overwrite_a_newer_status(client, db):
    bounce = postmark_bounce(message_id="pm-9", email="late@example.com")
    bounce["BouncedAt"] = "2026-11-28T10:30:00Z"
    _postmark(client, bounce)
    delivery = postmark_delivery(message_id="pm-9", email="late@example.com")
    delivery["DeliveredAt"] = "2026-11-28T10:00:00Z"
    _postmark(client, delivery)
    entry = SendLogEntry.objects.get(message_id="pm-9")
    assert entry.status == "bounced"
    assert entry.status_at.isoformat() == "2026-11-28T10:30:00+00:00"
