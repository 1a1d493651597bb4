"""The sandbox mail backend: the embedded demo keeps what it "sent" instead of sending it.

It is the default mailer when MAIL_BACKEND is unset outside production (see
config/settings.py). Like an anymail ESP backend, it sets `message.anymail_status`
with a message id per recipient, so the sending path reads ids the same way
whichever backend is configured.

With `simulate_events` (OPTIONS; on for the embedded default), it also plays the
ESP's webhooks for campaign messages (those with an X-Amends-Delivery header):
delivered, a few bounces and deferrals (campaigns/tracking/sandbox.py), stored
and applied by the same code as real webhooks. They are handed over when the
connection closes, after the worker has recorded its sends, as a real ESP's
webhooks arrive after its API answer.
"""

import uuid

from anymail.message import AnymailRecipientStatus, AnymailStatus
from django.core.mail.backends.base import BaseEmailBackend


def sandbox_message_id() -> str:
    return f"<sandbox-{uuid.uuid4().hex}@amends.local>"


class SandboxBackend(BaseEmailBackend):
    """Stores every message as an OutboxMessage row; nothing leaves the machine."""

    def __init__(self, *args, simulate_events: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.simulate_events = simulate_events
        self._opened = False
        self._events: list = []

    def open(self):
        self._opened = True
        return super().open()

    def close(self):
        try:
            self._report_events()
        finally:
            self._opened = False
            super().close()

    def _report_events(self) -> None:
        events, self._events = self._events, []
        if events:
            from campaigns.tracking import events_ingest
            from campaigns.tracking.sandbox import ESP_NAME

            events_ingest(events=events, esp_name=ESP_NAME)

    def _simulate(self, message, message_id: str, recipients: list[str]) -> None:
        if not self.simulate_events or "X-Amends-Delivery" not in message.extra_headers:
            return
        from django.utils import timezone

        from campaigns.tracking.sandbox import simulate

        for address in recipients:
            self._events += simulate(
                message_id=message_id,
                address=address,
                metadata=dict(getattr(message, "metadata", None) or {}),
                tags=list(getattr(message, "tags", None) or []),
                sent_at=timezone.now(),
            )

    def send_messages(self, email_messages) -> int:
        from campaigns.models import OutboxMessage

        sent = 0
        for message in email_messages:
            recipients = message.recipients()
            if not recipients:
                continue
            message_id = sandbox_message_id()
            message.extra_headers = {**message.extra_headers, "Message-ID": message_id}
            mime = message.message()  # the same header checks as a real send
            html = next(
                (
                    alt.content
                    for alt in getattr(message, "alternatives", [])
                    if alt.mimetype == "text/html"
                ),
                "",
            )
            OutboxMessage.objects.create(
                message_id=message_id,
                mailer=self.alias or "",
                from_email=str(mime["From"]),
                to=recipients,
                reply_to=list(message.reply_to),
                subject=str(message.subject),
                text=message.body or "",
                html=html if isinstance(html, str) else html.decode(),
                headers={k: str(v) for k, v in message.extra_headers.items()},
            )
            status = AnymailStatus()
            status.set_recipient_status(
                {address: AnymailRecipientStatus(message_id, "sent") for address in recipients}
            )
            message.anymail_status = status
            self._simulate(message, message_id, recipients)
            sent += 1
        if not self._opened:  # used without open()/close(): report at once
            self._report_events()
        return sent
