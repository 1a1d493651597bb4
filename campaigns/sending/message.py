"""One person's apology as an email: rendered from the campaign's version, built for the ESP."""

from email.utils import make_msgid

from anymail.backends.base import AnymailBaseBackend
from django.core.mail import EmailMultiAlternatives

from campaigns.mail import SandboxBackend
from campaigns.models import Campaign, Delivery
from campaigns.rendering import RenderedMessage, Renderer


class Composer:
    """Everything a campaign's messages share, worked out once per job."""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self.incident = campaign.incident
        self.renderer = Renderer(campaign.version, incident=campaign.incident)

    def render(self, delivery: Delivery) -> RenderedMessage:
        """The person's message: in the delivery's locale, else the person's, else the fallback."""
        person = delivery.person
        return self.renderer.render(
            person=person,
            verification_code=delivery.verification_code,
            wanted_locale=delivery.locale or person.locale,
        )

    def build(
        self, backend, delivery: Delivery, rendered: RenderedMessage
    ) -> EmailMultiAlternatives:
        reference = self.incident.reference
        headers = {"X-Amends-Delivery": str(delivery.pk), "X-Amends-Incident": reference}
        if not isinstance(backend, AnymailBaseBackend | SandboxBackend):
            # SMTP and the like: our own Message-ID is the id we record.
            headers["Message-ID"] = make_msgid(idstring=f"amends-{delivery.pk}")
        message = EmailMultiAlternatives(
            subject=rendered.subject,
            body=rendered.text,
            from_email=rendered.from_email,
            to=[delivery.address],
            reply_to=[rendered.reply_to] if rendered.reply_to else None,
            headers=headers,
        )
        if rendered.html:
            message.attach_alternative(rendered.html, "text/html")
        message.tags = [reference]
        message.metadata = {
            "delivery_id": str(delivery.pk),
            "incident": reference,
            "campaign_id": str(self.campaign.pk),
        }
        return message
