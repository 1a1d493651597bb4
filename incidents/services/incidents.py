"""Incident workflows. Each is one transaction that also writes its audit entry."""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.utils import timezone

from incidents import audit
from incidents.actors import Actor
from incidents.export import ledger_kept
from incidents.models import Incident, ReferenceCounter, TimelineEntry
from incidents.roles import ADMIN, ROLE_NAMES

User = get_user_model()

EDITABLE_FIELDS = [
    "title",
    "summary",
    "original_template",
    "original_subject",
    "sent_from",
    "sent_until",
    "esp",
    "severity",
    "owner",
    "personal_data_exposed",
    "became_aware_at",
]


def _next_reference(now: datetime) -> str:
    # A counter row per year, locked for the rest of the transaction: two
    # incidents opened at once get consecutive numbers, never the same one.
    try:
        with transaction.atomic():
            ReferenceCounter.objects.get_or_create(year=now.year)
    except IntegrityError:
        pass  # another transaction created this year's row first
    counter = ReferenceCounter.objects.select_for_update().get(year=now.year)
    counter.last += 1
    counter.save(update_fields=["last"])
    return f"INC-{now.year}-{counter.last:04d}"


@transaction.atomic
def incident_open(*, by: Actor, owner=None, **fields) -> Incident:
    now = timezone.now()
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Unknown incident fields: {sorted(unknown)}")
    incident = Incident(
        reference=_next_reference(now),
        owner=owner or by.user,
        created_by=by.user,
        created_at=now,
        updated_at=now,
        **fields,
    )
    incident.full_clean(exclude=["reference"])
    incident.save(force_insert=True)
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.SYSTEM,
        body=f"Incident opened by {by.label}.",
        author=by.user,
        created_at=now,
    )
    audit.record(
        by=by,
        action="incident.opened",
        obj=incident,
        incident=incident,
        after=audit.snapshot(incident, ["reference", "status", *EDITABLE_FIELDS]),
    )
    return incident


@transaction.atomic
def incident_update(*, incident: Incident, by: Actor, **changes) -> Incident:
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Unknown incident fields: {sorted(unknown)}")
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    before = audit.snapshot(incident, EDITABLE_FIELDS)
    for name, value in changes.items():
        setattr(incident, name, value)
    incident.full_clean()
    after = audit.snapshot(incident, EDITABLE_FIELDS)
    changed = [name for name in EDITABLE_FIELDS if before[name] != after[name]]
    if not changed:
        return incident
    incident.updated_at = timezone.now()
    incident.save(update_fields=[*changed, "updated_at"])
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.SYSTEM,
        body=f"{by.label} changed {', '.join(changed)}.",
        author=by.user,
        data={"changed": changed},
    )
    audit.record(
        by=by,
        action="incident.updated",
        obj=incident,
        incident=incident,
        before={name: before[name] for name in changed},
        after={name: after[name] for name in changed},
    )
    return incident


@transaction.atomic
def incident_transition(
    *, incident: Incident, to_status: str, by: Actor, note: str = ""
) -> Incident:
    # Lock the row so two people clicking at once cannot both move it.
    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if to_status == Incident.Status.RESOLVED and incident.status != to_status:
        _refuse_while_contact_incomplete(incident)
    previous = incident.transition_to(to_status)
    label = Incident.Status(to_status).label
    body = f"Status changed from {Incident.Status(previous).label} to {label}."
    if note:
        body += f" {note}"
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.STATUS,
        body=body,
        author=by.user,
        data={"from": previous, "to": to_status},
    )
    audit.record(
        by=by,
        action="incident.transitioned",
        obj=incident,
        incident=incident,
        before={"status": previous},
        after={"status": to_status, "note": note},
    )
    if to_status == Incident.Status.RESOLVED:
        ledger_kept.keep_when_resolved(incident)
    return incident


def _refuse_while_contact_incomplete(incident: Incident) -> None:
    """The completion gate: resolved means every active affected person is contacted or waived.

    Counted exactly, here, in the transaction that holds the incident locked. The
    refusal names each blocking status with its count; `params["blocking"]` carries
    them for the API.
    """
    from django.core.exceptions import ValidationError

    from incidents.selectors_contact import contact_blocking

    blocking = contact_blocking(incident=incident)
    if blocking:
        parts = ", ".join(f"{n:,} {status}" for status, n in blocking.items())
        raise ValidationError(
            f"Not everyone affected has been contacted or waived: {parts}. "
            "Contact them, record how they were reached, or waive them with a reason.",
            code="contact_incomplete",
            params={"blocking": blocking},
        )


@transaction.atomic
def incident_add_note(*, incident: Incident, body: str, by: Actor) -> TimelineEntry:
    body = body.strip()
    if not body:
        from django.core.exceptions import ValidationError

        raise ValidationError({"body": "A note cannot be empty."})
    entry = TimelineEntry.objects.create(
        incident=incident, kind=TimelineEntry.Kind.NOTE, body=body, author=by.user
    )
    audit.record(
        by=by,
        action="incident.note_added",
        obj=entry,
        incident=incident,
        after={"body": body},
    )
    return entry


@transaction.atomic
def user_create_with_role(
    *, username: str, email: str, password: str | None, role: str, by: Actor
) -> User:
    if role not in ROLE_NAMES:
        raise ValueError(f"Unknown role {role!r}; choose one of {', '.join(ROLE_NAMES)}.")
    user = User(username=username, email=email, is_staff=(role == ADMIN))
    if password:
        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    user.groups.add(Group.objects.get(name=role))
    audit.record(
        by=by,
        action="user.created",
        obj=user,
        after={"username": username, "role": role, "is_staff": user.is_staff},
    )
    return user


@transaction.atomic
def user_token_issue(*, user, by: Actor):
    """The user's API token, created on first sign-in. Issuing one is audited."""
    from rest_framework.authtoken.models import Token

    token, created = Token.objects.get_or_create(user=user)
    if created:
        audit.record(
            by=by, action="user.token_issued", obj=user, after={"username": user.get_username()}
        )
    return token


@transaction.atomic
def incident_record_regulator_notification(
    *, incident: Incident, notified_at: datetime, reference: str, by: Actor
) -> Incident:
    """Record that the regulator was told (GDPR Art. 33); this stops the 72-hour clock."""
    from django.core.exceptions import ValidationError

    incident = Incident.objects.select_for_update().get(pk=incident.pk)
    if not incident.personal_data_exposed:
        raise ValidationError("Only an incident that exposed personal data has a regulator clock.")
    if notified_at > timezone.now():
        raise ValidationError({"notified_at": "The notification cannot be in the future."})
    before = audit.snapshot(incident, ["regulator_notified_at", "regulator_reference"])
    incident.regulator_notified_at = notified_at
    incident.regulator_reference = reference.strip()
    incident.updated_at = timezone.now()
    incident.save(update_fields=["regulator_notified_at", "regulator_reference", "updated_at"])
    late = notified_at > incident.regulator_deadline
    TimelineEntry.objects.create(
        incident=incident,
        kind=TimelineEntry.Kind.SYSTEM,
        body=f"Regulator notified{' after the 72-hour deadline' if late else ''}"
        f"{f' (reference {incident.regulator_reference})' if incident.regulator_reference else ''}.",
        author=by.user,
        data={"late": late},
    )
    audit.record(
        by=by,
        action="incident.regulator_notified",
        obj=incident,
        incident=incident,
        before=before,
        after=audit.snapshot(incident, ["regulator_notified_at", "regulator_reference"]),
    )
    return incident
