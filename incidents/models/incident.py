from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class IllegalTransition(ValidationError):
    """An incident was asked to move to a status its current status cannot reach."""


class Severity(models.TextChoices):
    SEV1 = "SEV1", "SEV1 – critical"
    SEV2 = "SEV2", "SEV2 – major"
    SEV3 = "SEV3", "SEV3 – moderate"
    SEV4 = "SEV4", "SEV4 – minor"


class Status(models.TextChoices):
    OPEN = "open", "Open"
    INVESTIGATING = "investigating", "Investigating"
    CONTACTING = "contacting", "Contacting"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"


# The only moves an incident can make. Resolved can be reopened for investigation.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    Status.OPEN: (Status.INVESTIGATING,),
    Status.INVESTIGATING: (Status.CONTACTING, Status.OPEN),
    Status.CONTACTING: (Status.MONITORING, Status.INVESTIGATING),
    Status.MONITORING: (Status.RESOLVED, Status.CONTACTING),
    Status.RESOLVED: (Status.INVESTIGATING,),
}


class ReferenceCounter(models.Model):
    """Last incident number issued per year, so references are gapless and race-free."""

    year = models.PositiveIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class Incident(models.Model):
    Severity = Severity
    Status = Status

    reference = models.CharField(max_length=20, unique=True, editable=False)
    title = models.CharField(max_length=200)
    summary = models.TextField("what went wrong")

    # The mis-sent message.
    original_template = models.CharField("template or campaign", max_length=200, blank=True)
    original_subject = models.CharField("subject", max_length=300, blank=True)
    sent_from = models.DateTimeField("sending started", null=True, blank=True)
    sent_until = models.DateTimeField("sending ended", null=True, blank=True)
    esp = models.CharField("ESP", max_length=100, blank=True)

    severity = models.CharField(max_length=4, choices=Severity.choices, default=Severity.SEV3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_incidents"
    )
    personal_data_exposed = models.BooleanField(default=False)
    became_aware_at = models.DateTimeField(null=True, blank=True)
    regulator_notified_at = models.DateTimeField(null=True, blank=True)
    regulator_reference = models.CharField(max_length=200, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "severity"])]
        permissions = [
            ("transition_incident", "Can change an incident's status"),
            ("add_note", "Can add a note to an incident's timeline"),
            # Not about one incident: the operator metrics at /metrics (campaigns/metrics.py).
            ("view_metrics", "Can read the operator metrics (/metrics)"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(personal_data_exposed=False)
                | models.Q(became_aware_at__isnull=False),
                name="incident_exposure_needs_awareness_time",
                violation_error_message="When personal data was exposed, say when you "
                "became aware of it: the regulator deadline runs from then.",
            ),
            models.CheckConstraint(
                condition=models.Q(sent_from__isnull=True)
                | models.Q(sent_until__isnull=True)
                | models.Q(sent_until__gte=models.F("sent_from")),
                name="incident_sending_window_ordered",
                violation_error_message="The sending window must end after it starts.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("incidents:detail", kwargs={"reference": self.reference})

    # --- State machine --------------------------------------------------------
    def allowed_transitions(self) -> tuple[str, ...]:
        return TRANSITIONS[self.status]

    def transition_to(self, status: str, *, now: datetime | None = None) -> str:
        """Move to `status` or raise IllegalTransition. Returns the previous status."""
        if status not in Status.values:
            raise IllegalTransition(f"“{status}” is not an incident status.")
        if status == self.status:
            raise IllegalTransition(f"This incident is already {Status(status).label}.")
        if status not in self.allowed_transitions():
            allowed = ", ".join(Status(s).label for s in self.allowed_transitions())
            raise IllegalTransition(
                f"An incident cannot go from {Status(self.status).label} to "
                f"{Status(status).label}. From here it can go to: {allowed}."
            )
        previous, now = self.status, now or timezone.now()
        self.status = status
        self.updated_at = now
        self.resolved_at = now if status == Status.RESOLVED else None
        self.save(update_fields=["status", "updated_at", "resolved_at"])
        return previous

    # --- Regulator clock (GDPR Art. 33) --------------------------------------
    @property
    def regulator_deadline(self) -> datetime | None:
        if not (self.personal_data_exposed and self.became_aware_at):
            return None
        return self.became_aware_at + timedelta(hours=settings.REGULATOR_DEADLINE_HOURS)

    def regulator_clock(self, now: datetime | None = None) -> dict | None:
        """Where the 72-hour clock stands: remaining time and a level for the UI.

        Levels: ok, warning (within REGULATOR_WARNING_HOURS), overdue, notified.
        """
        deadline = self.regulator_deadline
        if deadline is None:
            return None
        if self.regulator_notified_at:
            return {"deadline": deadline, "remaining": None, "level": "notified"}
        remaining = deadline - (now or timezone.now())
        warn = timedelta(hours=settings.REGULATOR_WARNING_HOURS)
        if remaining <= timedelta(0):
            level = "overdue"
        elif remaining <= warn:
            level = "warning"
        else:
            level = "ok"
        return {"deadline": deadline, "remaining": remaining, "level": level}


class TimelineEntry(models.Model):
    class Kind(models.TextChoices):
        NOTE = "note", "Note"
        STATUS = "status", "Status change"
        SYSTEM = "system", "System event"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    body = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "timeline entries"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.body[:60]}"
