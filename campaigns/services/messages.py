"""Drafting apologies: every save is a new, immutable, checked version; test sends to the seed list."""

import re
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMultiAlternatives, mailers
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from campaigns.models import Message, MessageVersion, TestSend
from campaigns.rendering import (
    PARTS,
    SUBJECT_MAX_CHARS,
    TemplateProblem,
    check_template,
    normalise_locale,
    render_version,
)
from campaigns.sanitize import sanitize_html
from incidents import audit
from incidents.access import require
from incidents.actors import Actor
from incidents.addresses import InvalidAddress, normalise
from incidents.models import Incident, Segment
from incidents.pseudonym import address_ref

DRAFT_PERM = "campaigns.add_messageversion"
TEST_SEND_PERM = "campaigns.test_send_messageversion"

_LOCALE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8}){0,2}$")
MAX_LOCALES = 40


def acting_user(by: Actor, perm: str):
    """The person behind `by`, if they hold `perm`. Drafting and deciding need a person."""
    if by.user is None:
        raise PermissionDenied("Only a signed-in person can do this, not a system process.")
    require(by.user, perm)
    return by.user


# --- Checking a draft ------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """A message's fields after every check: what a new version will hold."""

    sender_name: str
    sender_address: str
    reply_to: str
    fallback_locale: str
    content: dict

    def same_as(self, version: MessageVersion) -> bool:
        return (
            self.sender_name,
            self.sender_address,
            self.reply_to,
            self.fallback_locale,
            self.content,
        ) == (
            version.sender_name,
            version.sender_address,
            version.reply_to,
            version.fallback_locale,
            version.content,
        )


def _text(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError
    # One newline convention, and no NUL (PostgreSQL's JSON cannot store it).
    return value.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()


def _address(value: str, field: str, errors: dict, *, required: bool) -> str:
    value = (value or "").strip()
    if not value:
        if required:
            errors[field] = ["Give an address."]
        return ""
    try:
        validate_email(value)
    except ValidationError:
        errors[field] = [f"“{value}” is not an email address."]
    return value


def _clean_variant(locale: str, variant, errors: dict) -> dict | None:
    key = f"content.{locale}"
    if not isinstance(variant, dict) or set(variant) - set(PARTS):
        errors[key] = ["Each language has a subject, a text and an HTML part, nothing else."]
        return None
    try:
        parts = {part: _text(variant.get(part)) for part in PARTS}
    except TypeError:
        errors[key] = ["Subject, text and HTML must be text."]
        return None
    if not parts["subject"]:
        errors[f"{key}.subject"] = ["Write a subject."]
    elif "\n" in parts["subject"]:
        errors[f"{key}.subject"] = ["A subject is one line."]
    elif len(parts["subject"]) > SUBJECT_MAX_CHARS:
        errors[f"{key}.subject"] = [f"A subject has at most {SUBJECT_MAX_CHARS} characters."]
    if not parts["text"] and not parts["html"]:
        errors[f"{key}.text"] = ["Write the plain text, the HTML, or both."]
    for part in PARTS:
        try:
            check_template(parts[part], part=part)
        except TemplateProblem as exc:
            errors[f"{key}.{part}"] = exc.messages
    if parts["html"] and f"{key}.html" not in errors:
        parts["html"] = sanitize_html(parts["html"]).strip()
        try:
            # Removing markup can move template tags (a table's text moves out of it).
            check_template(parts["html"], part="html")
        except TemplateProblem as exc:
            errors[f"{key}.html"] = [
                f"After removing HTML that is not allowed: {message}" for message in exc.messages
            ]
        if not parts["html"] and not parts["text"]:
            errors[f"{key}.html"] = ["Nothing is left of the HTML once unsafe parts are removed."]
    return parts


def draft_clean(
    *, sender_name: str, sender_address: str, reply_to: str, fallback_locale: str, content: dict
) -> Draft:
    """Check and normalise a draft without saving it.

    Raises ValidationError with a dict: keys are "sender_name", "sender_address",
    "reply_to", "fallback_locale", "content", or "content.<locale>.<part>"; each
    template problem starts "Line N: ".
    """
    errors: dict[str, list[str]] = {}
    name = " ".join((sender_name or "").split())
    if len(name) > 100:
        errors["sender_name"] = ["A sender name has at most 100 characters."]
    address = _address(sender_address, "sender_address", errors, required=True)
    reply = _address(reply_to, "reply_to", errors, required=False)
    fallback = normalise_locale(fallback_locale or settings.MESSAGE_DEFAULT_FALLBACK_LOCALE)
    cleaned: dict[str, dict] = {}
    if not isinstance(content, dict) or not content:
        errors["content"] = ["Write the message in at least one language."]
        content = {}
    elif len(content) > MAX_LOCALES:
        errors["content"] = [f"A message has at most {MAX_LOCALES} languages."]
        content = {}
    for raw_locale, variant in content.items():
        locale = normalise_locale(str(raw_locale))
        if not _LOCALE.match(locale):
            errors["content"] = [f"“{raw_locale}” is not a locale such as “en” or “de-at”."]
            continue
        if locale in cleaned:
            errors["content"] = [f"The locale “{locale}” is there twice."]
            continue
        parts = _clean_variant(locale, variant, errors)
        if parts is not None:
            cleaned[locale] = parts
    if cleaned and fallback not in cleaned:
        errors["fallback_locale"] = [
            f"The fallback locale “{fallback}” has no variant. Write one, or choose one of: "
            f"{', '.join(sorted(cleaned))}."
        ]
    if errors:
        raise ValidationError(errors)
    return Draft(name, address, reply, fallback, cleaned)


# --- Versions ----------------------------------------------------------------------------


def _message_for_segment(segment: Segment, by: Actor) -> Message:
    # Lock the incident first, as the audience services do, so the one message
    # per segment is created once even when two people save at the same time.
    incident = Incident.objects.select_for_update().get(pk=segment.incident_id)
    message = Message.objects.filter(segment=segment).first()
    if message is None:
        message = Message.objects.create(incident=incident, segment=segment, created_by=by.user)
        audit.record(
            by=by,
            action="message.created",
            obj=message,
            incident=incident,
            after={"segment": segment.pk, "segment_name": segment.name},
        )
    return message


def _changed_fields(draft: Draft, previous: MessageVersion | None) -> list[str]:
    if previous is None:
        return []
    changed = [
        name
        for name in ("sender_name", "sender_address", "reply_to", "fallback_locale")
        if getattr(draft, name) != getattr(previous, name)
    ]
    for locale in sorted(set(draft.content) | set(previous.content)):
        for part in PARTS:
            if draft.content.get(locale, {}).get(part) != previous.content.get(locale, {}).get(
                part
            ):
                changed.append(f"{locale}.{part}")
    return changed


@transaction.atomic
def version_create(
    *,
    by: Actor,
    content: dict,
    sender_address: str,
    sender_name: str = "",
    reply_to: str = "",
    fallback_locale: str = "",
    message: Message | None = None,
    segment: Segment | None = None,
    based_on: int | None = None,
) -> MessageVersion:
    """Save a new version of a segment's message (creating the message on first save).

    Give `message`, or `segment` for a segment that may have none yet. `based_on`
    is the version number the editor started from (0 for a new message): when
    someone else saved in between, the save is refused instead of silently
    replacing their work. A save that changes nothing is refused too, since a new
    version would drop the approvals of the current one.
    """
    acting_user(by, DRAFT_PERM)
    if (message is None) == (segment is None):
        raise TypeError("Give either message or segment.")
    draft = draft_clean(
        sender_name=sender_name,
        sender_address=sender_address,
        reply_to=reply_to,
        fallback_locale=fallback_locale,
        content=content,
    )
    if message is None:
        message = _message_for_segment(segment, by)
    else:
        Incident.objects.select_for_update().get(pk=message.incident_id)
    message = Message.objects.select_for_update().select_related("segment").get(pk=message.pk)
    previous = message.versions.order_by("-number").first()
    latest = previous.number if previous else 0
    if based_on is not None and based_on != latest:
        raise ValidationError(
            f"Someone saved version {latest} while you were editing version {based_on}. "
            "Open the latest version and make your changes there.",
            code="stale_version",
        )
    if previous is not None and draft.same_as(previous):
        raise ValidationError(f"Nothing changed since version {previous.number}.", code="unchanged")
    version = MessageVersion(
        message=message,
        number=latest + 1,
        author=by.user,
        created_at=timezone.now(),
        sender_name=draft.sender_name,
        sender_address=draft.sender_address,
        reply_to=draft.reply_to,
        fallback_locale=draft.fallback_locale,
        content=draft.content,
        parent_hash=previous.content_hash if previous else "",
    )
    version.content_hash = version.compute_hash()
    version.save()
    message.sender_name, message.sender_address = draft.sender_name, draft.sender_address
    message.reply_to, message.fallback_locale = draft.reply_to, draft.fallback_locale
    message.version_count, message.updated_at = version.number, version.created_at
    message.save(
        update_fields=[
            "sender_name",
            "sender_address",
            "reply_to",
            "fallback_locale",
            "version_count",
            "updated_at",
        ]
    )
    audit.record(
        by=by,
        action="message.version_created",
        obj=version,
        incident=message.incident,
        after={
            "message": message.pk,
            "segment": message.segment.name,
            "number": version.number,
            "content_hash": version.content_hash,
            "parent_hash": version.parent_hash,
            "locales": version.locales,
            "changed": _changed_fields(draft, previous),
        },
    )
    return version


# --- Test sends --------------------------------------------------------------------------


def _seed_addresses(addresses: list[str]) -> list[str]:
    seed = {normalise(address) for address in settings.MESSAGE_TEST_SEED_LIST}
    if not addresses:
        raise ValidationError({"addresses": "Name at least one seed-list address."})
    wanted, refused = [], []
    for raw in addresses:
        try:
            address = normalise(raw)
        except InvalidAddress:
            refused.append(str(raw))
            continue
        if address not in seed:
            refused.append(str(raw))
        elif address not in wanted:
            wanted.append(address)
    if refused:
        raise ValidationError(
            {
                "addresses": f"Test sends go only to the seed list ({', '.join(sorted(seed))}). "
                f"Not on it: {', '.join(refused)}. Nothing was sent."
            }
        )
    return wanted


def _test_email(version: MessageVersion, locale: str, address: str) -> EmailMultiAlternatives:
    rendered = render_version(version=version, locale=locale)  # sample values, never a person's
    email = EmailMultiAlternatives(
        subject=f"[TEST] {rendered.subject}",
        body=rendered.text,
        from_email=rendered.from_email,
        to=[address],
        reply_to=[rendered.reply_to] if rendered.reply_to else None,
        headers={
            "X-Amends-Test": "1",
            "X-Amends-Version": f"{version.message_id}.{version.number}",
            "X-Amends-Locale": locale,
        },
    )
    if rendered.html:
        email.attach_alternative(rendered.html, "text/html")
    return email


def version_test_send(
    *,
    version: MessageVersion,
    addresses: list[str],
    by: Actor,
    locales: list[str] | None = None,
) -> TestSend:
    """Send `version`, rendered with sample values, to seed-list addresses only.

    One email per address and locale (every locale unless `locales` names some),
    subject prefixed "[TEST]", header X-Amends-Test: 1, one recipient each. Any
    address off the seed list refuses the whole send before anything goes out.
    Mail goes through the default mailer, the real sending path, outside the
    database transaction (a slow mail server must not hold the audit lock).
    """
    acting_user(by, TEST_SEND_PERM)
    recipients = _seed_addresses(addresses)
    version = MessageVersion.objects.select_related("message__incident").get(pk=version.pk)
    locales = [normalise_locale(locale) for locale in (locales or version.locales)]
    unknown = [locale for locale in locales if locale not in version.content]
    if unknown:
        raise ValidationError({"locales": f"Version {version.number} has no “{unknown[0]}”."})
    emails = [_test_email(version, locale, address) for locale in locales for address in recipients]
    after = {
        "message": version.message_id,
        "number": version.number,
        "content_hash": version.content_hash,
        "recipients": [address_ref(address) for address in recipients],
        "locales": locales,
    }
    try:
        with mailers.default as connection:
            sent = connection.send_messages(emails)
    except Exception as exc:
        with transaction.atomic():
            audit.record(
                by=by,
                action="message.test_send_failed",
                obj=version,
                incident=version.message.incident,
                after={**after, "error": type(exc).__name__},
            )
        # Any backend's failure (SMTP's OSError, anymail's AnymailError, …) reaches
        # the UI and the API as one clear, recorded refusal rather than a 500.
        raise ValidationError(
            f"The mail server did not take the test ({type(exc).__name__}); it is recorded "
            "in the audit trail. Try again later."
        ) from exc
    with transaction.atomic():
        test_send = TestSend.objects.create(
            version=version,
            by=by.user,
            address_count=len(recipients),
            locales=locales,
            message_count=sent or 0,
        )
        audit.record(
            by=by,
            action="message.test_sent",
            obj=test_send,
            incident=version.message.incident,
            after={**after, "emails": sent or 0},
        )
    return test_send
