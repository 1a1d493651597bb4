"""The incident dashboard's counts, kept as one snapshot row per incident.

Counting a million people, their deliveries and events takes seconds, so the
dashboard never counts while it renders: it reads this row, which a refresh
(inline for small incidents, a queued job for large ones) rewrites at most
every DASHBOARD_SNAPSHOT_MAX_AGE_SECONDS while someone is looking. The page
says how old the figures are. The completion gate never reads it: it counts
exactly, in its own transaction.
"""

from django.db import models


class ContactSnapshot(models.Model):
    incident = models.OneToOneField(
        "incidents.Incident",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="contact_snapshot",
    )
    # What incidents.dashboard.compute_dashboard returned, as JSON.
    data = models.JSONField(default=dict)
    computed_at = models.DateTimeField(null=True, blank=True)
    took_ms = models.PositiveIntegerField("milliseconds the last refresh took", default=0)
    # Set by the one request that queued a refresh (a conditional UPDATE), so a page
    # polled by ten people queues one job, not ten.
    refresh_requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"contact snapshot of incident {self.incident_id} at {self.computed_at}"
