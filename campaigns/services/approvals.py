"""Four-eyes approval: Comms decides on exact versions; no author decides on their own words.

An approval copies the version's content hash. It counts only while that hash
equals the hash recomputed from the version (selectors.version_approval_state),
so an edit, which is always a new version, starts with no approvals, and an
altered row loses the ones it had.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from campaigns import selectors
from campaigns.models import Approval, Message, MessageVersion
from campaigns.services import notifications
from campaigns.services.messages import DRAFT_PERM, acting_user
from incidents import audit
from incidents.actors import Actor
from incidents.models import Incident
from incidents.queue import enqueue
from incidents.roles import COMMS

APPROVE_PERM = "campaigns.approve_messageversion"


def _lock(version: MessageVersion) -> MessageVersion:
    # Same order as version_create (incident, then message), so they never deadlock.
    Incident.objects.select_for_update().get(pk=version.message.incident_id)
    Message.objects.select_for_update().get(pk=version.message_id)
    return MessageVersion.objects.select_related("message__incident", "message__segment").get(
        pk=version.pk
    )


def _require_latest(version: MessageVersion) -> None:
    if version.number != version.message.version_count:
        raise ValidationError(
            f"Version {version.number} is not the latest; version "
            f"{version.message.version_count} replaced it. Review the latest version.",
            code="not_latest",
        )


def _require_independent(version: MessageVersion, user) -> None:
    """The decider wrote neither this version nor any earlier one of the message."""
    if user.pk == version.author_id:
        raise ValidationError(
            f"You wrote version {version.number}; someone who did not write it must decide on it.",
            code="self_approval",
        )
    earlier = selectors.chain_authors(version)
    if user.pk in earlier:
        numbers = ", ".join(str(n) for n in earlier[user.pk])
        raise ValidationError(
            f"You wrote version {numbers} of this message; someone who wrote none of it "
            "must decide on it.",
            code="self_approval",
        )


def _require_undecided(version: MessageVersion, user) -> None:
    mine = version.approvals.filter(approver=user).first()
    if mine is not None:
        raise ValidationError(
            f"You already {mine.get_decision_display().lower()} version {version.number}.",
            code="already_decided",
        )


def _require_intact(version: MessageVersion) -> str:
    actual = version.compute_hash()
    if actual != version.content_hash:
        raise ValidationError(
            f"Version {version.number} no longer matches the fingerprint it was saved with: "
            "it was changed in the database. It cannot be approved; save a new version."
        )
    return actual


@transaction.atomic
def approval_request(*, version: MessageVersion, by: Actor) -> list:
    """Ask every active Comms user who wrote none of the message to decide on `version`.

    Each gets an email (templates/emails/approval-requested-*) after the commit.
    Returns the users notified.
    """
    acting_user(by, DRAFT_PERM)
    version = _lock(version)
    _require_latest(version)
    state = selectors.version_approval_state(version)
    if state.rejected:
        raise ValidationError(
            f"Version {version.number} was rejected. Save a new version and ask for its approval."
        )
    if state.approved:
        raise ValidationError(f"Version {version.number} already has the approvals it needs.")
    decided = version.approvals.values_list("approver_id", flat=True)
    approvers = list(
        get_user_model()
        .objects.filter(groups__name=COMMS, is_active=True)
        .exclude(pk__in=list(selectors.chain_authors(version)))
        .exclude(pk__in=decided)
        .exclude(email="")
        .distinct()
        .order_by("username")
    )
    if not approvers:
        raise ValidationError(
            "No Comms user who wrote none of this message is left to decide on it. "
            "An admin can give someone the Comms role."
        )
    user_ids = [user.pk for user in approvers]
    enqueue(
        notifications.notify_approval_requested,
        version_id=version.pk,
        user_ids=user_ids,
        requested_by=by.label,
    )
    audit.record(
        by=by,
        action="message.approval_requested",
        obj=version,
        incident=version.message.incident,
        after={
            "message": version.message_id,
            "number": version.number,
            "content_hash": version.content_hash,
            "notified": user_ids,
            "needed": state.needed,
        },
    )
    return approvers


@transaction.atomic
def version_approve(*, version: MessageVersion, by: Actor, comment: str = "") -> Approval:
    """Approve exactly this version's content. Comms only, and never an author of the message."""
    user = acting_user(by, APPROVE_PERM)
    version = _lock(version)
    _require_latest(version)
    _require_independent(version, user)
    _require_undecided(version, user)
    if version.approvals.filter(decision=Approval.Decision.REJECTED).exists():
        raise ValidationError(
            f"Version {version.number} was rejected, so it cannot be approved. "
            "The author can save a new version."
        )
    content_hash = _require_intact(version)
    approval = Approval.objects.create(
        version=version,
        approver=user,
        decision=Approval.Decision.APPROVED,
        comment=(comment or "").strip(),
        content_hash=content_hash,
    )
    state = selectors.version_approval_state(version)
    audit.record(
        by=by,
        action="message.version_approved",
        obj=approval,
        incident=version.message.incident,
        after={
            "message": version.message_id,
            "number": version.number,
            "content_hash": content_hash,
            "comment": approval.comment,
            "approvals": state.have,
            "needed": state.needed,
            "approved": state.approved,
        },
    )
    return approval


@transaction.atomic
def version_reject(*, version: MessageVersion, by: Actor, comment: str) -> Approval:
    """Reject `version` with a comment, which goes back to its authors by email.

    A rejection stops the version for good, even one that had its approvals:
    the author saves a new version, which needs its own approvals.
    """
    user = acting_user(by, APPROVE_PERM)
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError({"comment": "Say what needs to change, for the author."})
    version = _lock(version)
    _require_latest(version)
    _require_independent(version, user)
    _require_undecided(version, user)
    rejection = Approval.objects.create(
        version=version,
        approver=user,
        decision=Approval.Decision.REJECTED,
        comment=comment,
        content_hash=version.compute_hash(),
    )
    enqueue(notifications.notify_version_rejected, approval_id=rejection.pk)
    audit.record(
        by=by,
        action="message.version_rejected",
        obj=rejection,
        incident=version.message.incident,
        after={
            "message": version.message_id,
            "number": version.number,
            "content_hash": rejection.content_hash,
            "comment": comment,
        },
    )
    return rejection
