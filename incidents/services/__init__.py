"""Workflows that change state. Each runs in one transaction and writes its audit entry.

Import from here: `from incidents import services; services.incident_open(...)`.
"""

from incidents.services.audience import (
    affected_add_from_csv,
    affected_remove,
    audience_freeze,
    audience_freeze_start,
    segment_delete,
    segment_save,
    segments_apply,
)
from incidents.services.incidents import (
    EDITABLE_FIELDS,
    incident_add_note,
    incident_open,
    incident_record_regulator_notification,
    incident_transition,
    incident_update,
    user_create_with_role,
    user_token_issue,
)

__all__ = [
    "EDITABLE_FIELDS",
    "affected_add_from_csv",
    "affected_remove",
    "audience_freeze",
    "audience_freeze_start",
    "incident_add_note",
    "incident_open",
    "incident_record_regulator_notification",
    "incident_transition",
    "incident_update",
    "segment_delete",
    "segment_save",
    "segments_apply",
    "user_create_with_role",
    "user_token_issue",
]

# Send log ingest (appended so parallel work on the lists above does not conflict).
from incidents.services.sendlog import (  # noqa: E402
    IngestResult,
    sendlog_import_file,
    sendlog_import_run,
    sendlog_import_start,
    sendlog_ingest_rows,
    sendlog_prune,
    sendlog_record_event,
)

__all__ += [
    "IngestResult",
    "sendlog_import_file",
    "sendlog_import_run",
    "sendlog_import_start",
    "sendlog_ingest_rows",
    "sendlog_prune",
    "sendlog_record_event",
]

# Contact tracking done by people (appended, as above).
from incidents.services.contact import (  # noqa: E402
    BulkResult,
    contact_assign,
    contact_bulk,
    contact_mark_unreachable,
    contact_record,
    contact_waive,
)

__all__ += [
    "BulkResult",
    "contact_assign",
    "contact_bulk",
    "contact_mark_unreachable",
    "contact_record",
    "contact_waive",
]
