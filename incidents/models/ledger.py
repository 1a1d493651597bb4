"""The contact ledger kept ready for exports (PostgreSQL only).

An incident's pseudonymised ledger, once exported in a format, is kept as one
finished line per person (`LedgerLine`), so the next export of a large
incident only reads lines instead of joining people, deliveries, events and
status history again. Database triggers (incidents migration 0012)
add a `LedgerMark` for each person whose data changes while a `LedgerCache`
exists for their incident and format; an export first recomputes the marked
people's lines, and any person marked after that is computed live in the
export's own snapshot. PII ledgers are never kept: they are always computed.
"""

from django.db import models


class LedgerCache(models.Model):
    """An incident's ledger kept in one format; `fingerprint` names the query and key it used."""

    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE)
    fmt = models.CharField(max_length=8)
    fingerprint = models.CharField(max_length=64)
    built_at = models.DateTimeField(null=True)  # None while its lines are being built

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["incident", "fmt"], name="ledger_cache_once_per_format")
        ]

    def __str__(self) -> str:
        return f"{self.fmt} ledger of incident {self.incident_id}"


class LedgerLine(models.Model):
    """One person's finished ledger line (CSV row or JSON object, with its line end)."""

    pk = models.CompositePrimaryKey("fmt", "person")
    fmt = models.CharField(max_length=8)
    person = models.ForeignKey(
        "incidents.AffectedPerson", on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    incident = models.ForeignKey(
        "incidents.Incident", on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    line = models.TextField()

    def __str__(self) -> str:
        return f"{self.fmt} line of person {self.person_id}"


class LedgerMark(models.Model):
    """A person whose kept line is out of date. Written by triggers; many per person is fine."""

    incident_id = models.BigIntegerField()
    fmt = models.CharField(max_length=8)
    person_id = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.fmt} mark of person {self.person_id}"
