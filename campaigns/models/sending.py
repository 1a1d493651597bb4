"""Campaigns and deliveries: one send of an approved version, and each person's copy of it.

The database holds the whole state of a send. A delivery moves through its
statuses by conditional UPDATEs (campaigns/sending/), so two workers, a
crashed worker and the sweeper can never both act on one row; the partial
unique index `delivery_once_per_incident` makes a second apology to a person
in one incident impossible unless it is an explicit, audited "send again".
See docs/sending.md for the exact guarantee.
"""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

# Crockford's base32: no I, L, O or U, so a code read aloud or typed is unambiguous.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10  # 50 random bits


def new_verification_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class IllegalTransition(ValidationError):
    """A campaign or delivery was asked to move to a status its current status cannot reach."""


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"


# A completed campaign runs again when a top-up or a human "resend" gives it new work.
CAMPAIGN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    CampaignStatus.DRAFT: (CampaignStatus.RUNNING, CampaignStatus.CANCELLED),
    CampaignStatus.RUNNING: (
        CampaignStatus.PAUSED,
        CampaignStatus.CANCELLED,
        CampaignStatus.COMPLETED,
    ),
    CampaignStatus.PAUSED: (CampaignStatus.RUNNING, CampaignStatus.CANCELLED),
    CampaignStatus.COMPLETED: (CampaignStatus.RUNNING,),
    CampaignStatus.CANCELLED: (),
}
# Campaigns that still own their segment: at most one of them per segment.
UNFINISHED = (CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED)


def _default_rate_limit() -> int:
    return settings.SEND_RATE_LIMIT


def _default_batch_size() -> int:
    return settings.SEND_BATCH_SIZE


class Campaign(models.Model):
    """One send of an approved message version to a segment, with its settings and control state."""

    Status = CampaignStatus

    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="campaigns"
    )
    segment = models.ForeignKey(
        "incidents.Segment", on_delete=models.PROTECT, related_name="campaigns"
    )
    version = models.ForeignKey(
        "campaigns.MessageVersion", on_delete=models.PROTECT, related_name="campaigns"
    )
    # The approved hash at launch: a top-up or a resume sends only while it still holds.
    content_hash = models.CharField(max_length=64)
    status = models.CharField(
        max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    paused_reason = models.TextField(blank=True)
    rate_limit = models.PositiveIntegerField("messages per second", default=_default_rate_limit)
    batch_size = models.PositiveIntegerField(default=_default_batch_size)
    mailer = models.CharField("mailer alias (MAILERS)", max_length=50, default="default")
    is_resend = models.BooleanField("send again", default=False)
    resend_reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    launched_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When a worker last claimed work: the sweeper re-enqueues only a campaign that stalled.
    last_claim_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_resend=False) | ~models.Q(resend_reason=""),
                name="campaign_resend_needs_reason",
                violation_error_message="Say why these people get the apology again.",
            ),
            models.CheckConstraint(
                condition=models.Q(rate_limit__gte=1) & models.Q(batch_size__gte=1),
                name="campaign_rate_and_batch_positive",
            ),
            # What a delivery's (campaign, incident) refers to: see Delivery.campaign.
            models.UniqueConstraint(fields=["id", "incident"], name="campaign_id_incident"),
            # One campaign at a time per segment: a second one is a top-up or waits.
            models.UniqueConstraint(
                fields=["segment"],
                condition=models.Q(status__in=UNFINISHED),
                name="campaign_one_unfinished_per_segment",
                violation_error_message="This segment already has a campaign that is not finished.",
            ),
        ]
        permissions = [
            ("launch_campaign", "Can launch a campaign, top it up or send again"),
            ("control_campaign", "Can pause, resume or cancel a campaign"),
        ]

    def __str__(self) -> str:
        return f"campaign {self.pk} ({self.get_status_display()})"

    # --- State machine --------------------------------------------------------
    def allowed_transitions(self) -> tuple[str, ...]:
        return CAMPAIGN_TRANSITIONS[self.status]

    def transition_to(self, status: str, *, reason: str = "", now=None) -> str:
        """Move to `status` or raise IllegalTransition. Saves; returns the previous status.

        Callers hold the row locked (select_for_update), so the check and the
        save see the same status.
        """
        if status not in CampaignStatus.values:
            raise IllegalTransition(f"“{status}” is not a campaign status.")
        if status not in self.allowed_transitions():
            raise IllegalTransition(
                f"A {self.get_status_display().lower()} campaign cannot become "
                f"{CampaignStatus(status).label.lower()}."
            )
        now = now or timezone.now()
        previous, self.status = self.status, status
        fields = ["status"]
        if status == CampaignStatus.PAUSED:
            self.paused_reason = reason
            fields.append("paused_reason")
        elif previous == CampaignStatus.PAUSED:
            self.paused_reason = ""
            fields.append("paused_reason")
        if status in (CampaignStatus.CANCELLED, CampaignStatus.COMPLETED):
            self.finished_at = now
            fields.append("finished_at")
        elif status == CampaignStatus.RUNNING:
            self.finished_at = None
            fields.append("finished_at")
        self.save(update_fields=fields)
        return previous

    def pause(self, reason: str) -> str:
        return self.transition_to(CampaignStatus.PAUSED, reason=reason)

    def resume(self) -> str:
        return self.transition_to(CampaignStatus.RUNNING)

    def cancel(self) -> str:
        return self.transition_to(CampaignStatus.CANCELLED)

    def complete(self) -> str:
        return self.transition_to(CampaignStatus.COMPLETED)


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    # The next five come from ESP events (tracking), after `sent`.
    DEFERRED = "deferred", "Deferred"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    REJECTED = "rejected", "Rejected"
    COMPLAINED = "complained", "Complained"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"
    UNCERTAIN = "uncertain", "Uncertain"
    CANCELLED = "cancelled", "Cancelled"


_AFTER_SENT = (
    DeliveryStatus.DEFERRED,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.REJECTED,
    DeliveryStatus.COMPLAINED,
)
# What an ESP event can say about a message it took (campaigns/tracking/rules.py
# decides which event wins when they arrive out of order).
_EVENT_STATES = (*_AFTER_SENT, DeliveryStatus.FAILED)
# Every move a delivery can make. The worker's and the sweeper's conditional
# UPDATEs (campaigns/sending/) and the tracking apply job (campaigns/tracking/)
# make exactly these moves, and no others.
DELIVERY_TRANSITIONS: dict[str, tuple[str, ...]] = {
    # claimed by a worker; cancelled with its campaign; suppressed or cancelled
    # when the worker finds the address suppressed or the person removed;
    # delivered: a late event for the copy sent before a soft-bounce retry.
    DeliveryStatus.QUEUED: (
        DeliveryStatus.SENDING,
        DeliveryStatus.CANCELLED,
        DeliveryStatus.SUPPRESSED,
        DeliveryStatus.DELIVERED,
    ),
    # The ESP answered (sent, failed), asked to wait (queued), or nobody knows
    # (uncertain); or its webhook event came before the worker recorded the answer.
    DeliveryStatus.SENDING: (
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.QUEUED,
        DeliveryStatus.UNCERTAIN,
        DeliveryStatus.SUPPRESSED,
        DeliveryStatus.CANCELLED,
        *_AFTER_SENT,
    ),
    DeliveryStatus.SENT: _EVENT_STATES,
    # queued: a deferral retried, when DEFERRAL_RETRY is on.
    DeliveryStatus.DEFERRED: (*_EVENT_STATES, DeliveryStatus.QUEUED),
    # A human (resend or mark sent), or evidence the ESP took it: an event.
    DeliveryStatus.UNCERTAIN: (DeliveryStatus.QUEUED, DeliveryStatus.SENT, *_EVENT_STATES),
    # A bounce or complaint after delivery is recorded as such (asynchronous bounces).
    DeliveryStatus.DELIVERED: (DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED),
    # queued: a soft bounce sent again (SOFT_BOUNCE_RETRIES); complained: after a soft bounce.
    DeliveryStatus.BOUNCED: (DeliveryStatus.QUEUED, DeliveryStatus.COMPLAINED),
    DeliveryStatus.REJECTED: (),
    DeliveryStatus.COMPLAINED: (),
    DeliveryStatus.FAILED: (),
    DeliveryStatus.SUPPRESSED: (),
    DeliveryStatus.CANCELLED: (),
}
# Handed to the ESP: what counts as "sent" in progress figures.
ACCEPTED = (DeliveryStatus.SENT, *_AFTER_SENT)
PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)


class SendClaim(models.Model):
    """One claim of a send job: the rows it set `sending` share its lease, and this row
    says how far, in id order, they were handed to the ESP.

    A job sends its claimed rows in id order and, right before each group's ESP
    calls, moves `handed_through` up to the group's last id by one conditional
    UPDATE (campaigns.sending.claims.hand_over_many): only while the claim is not
    revoked, its lease holds for at least half its length, and nothing at or past
    the group's first id was handed yet. The sweeper revokes a claim whose lease
    ran out before it looks at its rows; both statements lock this row, so exactly
    one of them wins: after the revoke nothing more is handed, and the rows past
    `handed_through` were never given to the ESP and may be queued again.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    lease_until = models.DateTimeField()
    handed_through = models.BigIntegerField("last delivery id handed to the ESP", null=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"claim {self.pk} of campaign {self.campaign_id}"


class Delivery(models.Model):
    """One person's copy of a campaign's apology, with its sending state and ESP message id."""

    Status = DeliveryStatus

    # No index of its own: (campaign, status) and (campaign, person) both start with it, and
    # every index is written again by each of a delivery's three updates while it is sent.
    # On PostgreSQL one foreign key covers both columns, (campaign, incident) -> the
    # campaign's (id, incident) (migration 0011): the incident must be the campaign's, and a
    # launch's million rows cost one deferred check each at commit instead of two.
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.PROTECT,
        related_name="deliveries",
        db_index=False,
        db_constraint=False,
    )
    # Copied from the campaign, so the "once per incident" index needs no join.
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    person = models.ForeignKey(
        "incidents.AffectedPerson", on_delete=models.PROTECT, related_name="deliveries"
    )
    address = models.CharField("address sent to", max_length=320)
    locale = models.CharField(max_length=16, blank=True)
    status = models.CharField(
        max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField("ESP calls made", default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # The claim that set the row `sending` (and its lease). Whether the row was handed to
    # the ESP is the claim's `handed_through`, not a column of its own: marking one small
    # row per group of messages costs far less than updating each delivery once more.
    # No database key and no index: nothing looks deliveries up by their claim.
    claim = models.ForeignKey(
        "SendClaim",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    esp_message_id = models.CharField("ESP message id", max_length=255, blank=True)
    error = models.TextField("ESP's reason or ours", blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Unique through Meta.constraints: `unique=True` would add a second, pattern-matching
    # index on PostgreSQL, and codes are only ever looked up whole.
    verification_code = models.CharField(max_length=16, default=new_verification_code)
    resend = models.BooleanField("sent again", default=False)
    # From ESP events (campaigns/tracking): when it was delivered, how it bounced,
    # and the flags that never change its status.
    delivered_at = models.DateTimeField(null=True, blank=True)
    bounce_kind = models.CharField(max_length=4, blank=True, db_default="")  # hard / soft
    last_event_at = models.DateTimeField("latest ESP event applied", null=True, blank=True)
    opened = models.BooleanField(default=False, db_default=False)
    clicked = models.BooleanField(default=False, db_default=False)
    # Times a soft bounce sent this same row again (SOFT_BOUNCE_RETRIES).
    soft_bounces = models.PositiveSmallIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "person"], name="delivery_once_per_campaign"
            ),
            models.UniqueConstraint(
                fields=["verification_code"], name="delivery_verification_code"
            ),
            # The rule itself: one apology per person and incident, unless sent again on purpose.
            models.UniqueConstraint(
                fields=["incident", "person"],
                condition=models.Q(resend=False),
                name="delivery_once_per_incident",
                violation_error_message="This person already has an apology for this incident.",
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "status"], name="delivery_campaign_status"),
            # The sweeper's question, "whose lease ran out?", over the few rows in flight.
            models.Index(
                fields=["lease_until"],
                condition=models.Q(status="sending"),
                name="delivery_in_flight",
            ),
            # Webhook events find their delivery by the ESP's message id.
            # Not partial: PostgreSQL cannot prove "<> ''" for a long IN list.
            models.Index(fields=["esp_message_id"], name="delivery_esp_message_id"),
        ]
        permissions = [("resolve_delivery", "Can decide on an uncertain delivery")]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.get_status_display()})"

    def allowed_transitions(self) -> tuple[str, ...]:
        return DELIVERY_TRANSITIONS[self.status]

    def transition_to(self, status: str, *, error: str | None = None, now=None) -> str:
        """Move to `status` or raise IllegalTransition; saves the changed fields only.

        For human decisions on one row (the worker moves rows in bulk with the
        same rules, by conditional UPDATE). The caller holds the row locked.
        """
        if status not in DeliveryStatus.values:
            raise IllegalTransition(f"“{status}” is not a delivery status.")
        if status not in self.allowed_transitions():
            raise IllegalTransition(
                f"A {self.get_status_display().lower()} delivery cannot become "
                f"{DeliveryStatus(status).label.lower()}."
            )
        now = now or timezone.now()
        previous, self.status, self.updated_at = self.status, status, now
        fields = ["status", "updated_at"]
        if status == DeliveryStatus.QUEUED:
            self.next_attempt_at, self.lease_until = None, None
            fields += ["next_attempt_at", "lease_until"]
        if status == DeliveryStatus.SENT and self.sent_at is None:
            self.sent_at = now
            fields.append("sent_at")
        if error is not None:
            self.error = error
            fields.append("error")
        self.save(update_fields=fields)
        return previous
