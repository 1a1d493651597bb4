from incidents.models.audit import AuditEntry
from incidents.models.incident import IllegalTransition, Incident, ReferenceCounter, TimelineEntry

__all__ = ["AuditEntry", "IllegalTransition", "Incident", "ReferenceCounter", "TimelineEntry"]
