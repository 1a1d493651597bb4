"""The sandbox mail backend: the embedded demo keeps what it "sent" instead of sending it.

It is the default mailer when MAIL_BACKEND is unset outside production (see
config/settings.py). Like an anymail ESP backend, it sets `message.anymail_status`
with a message id per recipient, so the sending path reads ids the same way
whichever backend is configured.
"""

import uuid

from anymail.message import AnymailRecipientStatus, AnymailStatus
from django.core.mail.backends.base import BaseEmailBackend


def sandbox_message_id() -> str:
    return f"<sandbox-{uuid.uuid4().hex}@amends.local>"


class SandboxBackend(BaseEmailBackend):
    """Stores every message as an OutboxMessage row; nothing leaves the machine."""

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
            sent += 1
        return sent
