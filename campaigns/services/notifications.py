"""Emails to staff about approvals. Jobs: they take ids and run after the commit (incidents.queue).

Our own system emails are Django templates, templates/emails/<name>-subject.txt,
-body.txt and -body.html; staff-written apologies never go through this path.
They carry no customer data: incident, segment, version and the reviewer's words.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives, mailers
from django.template.loader import render_to_string

from campaigns.models import Approval, MessageVersion


def make_email(name: str, context: dict, *, to: str) -> EmailMultiAlternatives:
    """One system email from templates/emails/<name>-subject.txt, -body.txt and -body.html."""
    subject = " ".join(render_to_string(f"emails/{name}-subject.txt", context).split())
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"emails/{name}-body.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers={"Auto-Submitted": "auto-generated"},
    )
    email.attach_alternative(render_to_string(f"emails/{name}-body.html", context), "text/html")
    return email


def _context(version: MessageVersion) -> dict:
    message = version.message
    incident = message.incident
    variant = version.content.get(version.fallback_locale, {})
    return {
        "incident": incident,
        "segment": message.segment,
        "version": version,
        "subject": variant.get("subject", ""),
        "url": settings.SITE_URL.rstrip("/") + incident.get_absolute_url(),
        "company_name": settings.COMPANY_NAME,
    }


def _send(emails: list) -> int:
    if not emails:
        return 0
    with mailers.default as connection:
        return connection.send_messages(emails)


def _version(version_id: int) -> MessageVersion:
    return MessageVersion.objects.select_related(
        "message__incident", "message__segment", "author"
    ).get(pk=version_id)


def notify_approval_requested(*, version_id: int, user_ids: list[int], requested_by: str) -> int:
    """Email each approver that `version` awaits their decision (queued by approval_request)."""
    version = _version(version_id)
    context = _context(version) | {"requested_by": requested_by}
    users = get_user_model().objects.filter(pk__in=user_ids, is_active=True).exclude(email="")
    return _send(
        [
            make_email("approval-requested", context | {"recipient": user}, to=user.email)
            for user in users
        ]
    )


def notify_version_rejected(*, approval_id: int) -> int:
    """Email the authors of a rejected version the reviewer's comment (queued by version_reject)."""
    rejection = Approval.objects.select_related("approver").get(pk=approval_id)
    version = _version(rejection.version_id)
    author_ids = MessageVersion.objects.filter(
        message_id=version.message_id, number__lte=version.number
    ).values_list("author_id", flat=True)
    authors = get_user_model().objects.filter(pk__in=author_ids, is_active=True).exclude(email="")
    context = _context(version) | {"rejection": rejection}
    return _send(
        [
            make_email("version-rejected", context | {"recipient": user}, to=user.email)
            for user in authors
        ]
    )
