from incidents.models.audit import AuditEntry
from incidents.models.incident import Incident, IllegalTransition, ReferenceCounter, TimelineEntry

__all__ = ["AuditEntry", "IllegalTransition", "Incident", "ReferenceCounter", "TimelineEntry"]
