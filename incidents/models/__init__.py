from incidents.models.audience import AffectedPerson, AudienceQuery, Segment
from incidents.models.audit import AuditEntry
from incidents.models.contact import ContactMethod, ContactRecord, ContactStatus
from incidents.models.dashboard import ContactSnapshot
from incidents.models.export import EvidenceExport
from incidents.models.incident import IllegalTransition, Incident, ReferenceCounter, TimelineEntry
from incidents.models.ledger import LedgerCache, LedgerLine, LedgerMark
from incidents.models.sendlog import SendLogEntry, SendLogImport

__all__ = [
    "AffectedPerson",
    "AudienceQuery",
    "AuditEntry",
    "ContactMethod",
    "ContactRecord",
    "ContactSnapshot",
    "ContactStatus",
    "EvidenceExport",
    "IllegalTransition",
    "Incident",
    "LedgerCache",
    "LedgerLine",
    "LedgerMark",
    "ReferenceCounter",
    "Segment",
    "SendLogEntry",
    "SendLogImport",
    "TimelineEntry",
]
