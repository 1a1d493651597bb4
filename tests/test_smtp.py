"""Sending through Django's SMTP backend to a real SMTP server (aiosmtpd) on this machine.

The worker builds each apology with exactly one To, no Cc or Bcc, and its own
Message-ID, which it records as the ESP message id: an SMTP relay gives none.
"""

import email
import email.policy
import socket
import threading
import time

import pytest
from aiosmtpd.controller import Controller

from campaigns import services
from campaigns.models import Campaign, Delivery
from incidents.actors import Actor
from incidents.services.audience import default_segment
from tests.factories import freeze_people

CONTENT = {
    "en": {
        "subject": "We sent you an email by mistake",
        "text": "Dear {{ first_name|default('customer') }}, we are sorry. "
        "Code: {{ verification_code }}",
        "html": "<p>We are sorry.</p><p>Code: {{ verification_code }}</p>",
    }
}


class Inbox:
    """aiosmtpd handler: keeps every envelope it is given."""

    def __init__(self):
        self.lock = threading.Lock()
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.envelopes.append(
                (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's own check needs a real one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": controller.port, "timeout": 10},
        }
    }
    yield inbox
    controller.stop()


@pytest.fixture(autouse=True)
def _fast_sending(transactional_audit, settings):
    settings.SEND_RATE_LIMIT = 1000
    settings.SEND_CONCURRENCY = 2
    settings.SEND_REDIS_PREFIX = f"amends-test-smtp:{time.monotonic_ns()}"


def drain(settings):
    if not settings.REDIS_URL:
        return
    import django_rq
    from rq import SimpleWorker

    django_rq.get_worker("send", worker_class=SimpleWorker).work(burst=True)


def test_a_campaign_sent_over_smtp_has_one_recipient_per_message_and_our_message_id(
    smtp_server, incident, support_sam, comms_cleo, settings
):
    freeze_people(
        incident,
        support_sam,
        [(f"smtp-{i}", f"Reader{i}@Example.org", "en", {"first_name": f"R{i}"}) for i in range(6)],
    )
    segment = default_segment(incident)
    version = services.version_create(
        by=Actor.for_user(support_sam),
        segment=segment,
        sender_name="Amends Care",
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=CONTENT,
    )
    services.version_approve(version=version, by=Actor.for_user(comms_cleo))
    campaign = services.campaign_launch(
        version=version, segment=segment, by=Actor.for_user(support_sam)
    )
    drain(settings)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    deliveries = {str(d.pk): d for d in campaign.deliveries.all()}
    assert {d.status for d in deliveries.values()} == {Delivery.Status.SENT}
    assert len(smtp_server.envelopes) == 6
    for mail_from, rcpt_tos, content in smtp_server.envelopes:
        message = email.message_from_bytes(content, policy=email.policy.default)
        delivery = deliveries[message["X-Amends-Delivery"]]
        assert rcpt_tos == [delivery.address] and mail_from == "care@retailer.example"
        assert message.get_all("To") == [delivery.address]
        assert message["Cc"] is None and message["Bcc"] is None
        assert message["Message-ID"] == delivery.esp_message_id
        assert delivery.esp_message_id.startswith("<") and "amends-" in delivery.esp_message_id
        assert message["X-Amends-Incident"] == incident.reference
        assert delivery.verification_code in message.get_body(("plain",)).get_content()
