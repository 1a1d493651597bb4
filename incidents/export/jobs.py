"""Background jobs for evidence packs. Each takes ids, claims its row, and is safe to run again."""

import logging

from incidents.actors import Actor
from incidents.models import EvidenceExport

log = logging.getLogger(__name__)


def run_evidence_export(export_id: int) -> None:
    """Build a queued pack (queued by services.export_request), on the `exports` queue.

    Claimed with a conditional UPDATE, so a second run does nothing. A failure
    removes the partial files and is recorded on the row and in the audit trail.
    """
    from django.utils import timezone

    from incidents.export.services import export_build, export_fail

    claimed = EvidenceExport.objects.filter(
        pk=export_id, status=EvidenceExport.Status.QUEUED
    ).update(status=EvidenceExport.Status.RUNNING, started_at=timezone.now())
    if not claimed:
        log.info("evidence export %s is not queued; nothing to do", export_id)
        return
    export = EvidenceExport.objects.select_related("incident", "created_by").get(pk=export_id)
    by = Actor.for_user(export.created_by) if export.created_by else Actor.system("export")
    try:
        export_build(export=export, by=by)
    except Exception as exc:
        log.exception("evidence export %s failed", export_id)
        export_fail(export_id=export_id, failure=f"{exc.__class__.__name__}: {exc}", by=by)
        raise


def run_keep_ledger(incident_id: int, fmt: str) -> int:
    """Keep the incident's pseudonymised ledger in `fmt` ready for its next export.

    Queued after an export (incidents/export/ledger_kept.py): builds the kept lines
    the first time, folds the people changed since into them after that. Safe to
    run again or late: it works from whatever is marked when it runs.
    """
    from incidents.export import ledger_kept
    from incidents.models import Incident

    incident = Incident.objects.filter(pk=incident_id).first()
    return 0 if incident is None else ledger_kept.keep(incident, fmt=fmt)


def run_expire_exports() -> int:
    """Delete the files of expired packs (schedule it daily, or run manage.py expire_exports)."""
    from incidents.export.services import exports_expire

    return exports_expire(by=Actor.system("expire_exports"))
