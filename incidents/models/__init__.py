from incidents.models.audience import AffectedPerson, AudienceQuery, Segment
from incidents.models.audit import AuditEntry
from incidents.models.incident import IllegalTransition, Incident, ReferenceCounter, TimelineEntry
from incidents.models.sendlog import SendLogEntry, SendLogImport

__all__ = [
    "AffectedPerson",
    "AudienceQuery",
    "AuditEntry",
    "IllegalTransition",
    "Incident",
    "ReferenceCounter",
    "Segment",
    "SendLogEntry",
    "SendLogImport",
    "TimelineEntry",
]
