"""Background jobs of the incidents app. Each takes ids, claims its row, and is safe to run again."""

import logging
from contextlib import suppress

from incidents.actors import Actor
from incidents.models import SendLogImport
from incidents.sendlog_files import SendLogFileError

log = logging.getLogger(__name__)


def run_sendlog_import(import_id: int) -> None:
    """Import an uploaded send log file (queued by services.sendlog_import_start).

    Claims the import with a conditional UPDATE, so a second run of the same job
    does nothing. Progress, the outcome and a failure are recorded on the row.
    """
    from incidents.services.sendlog import sendlog_import_run, upload_path

    claimed = SendLogImport.objects.filter(pk=import_id, status=SendLogImport.Status.QUEUED).update(
        status=SendLogImport.Status.RUNNING
    )
    if not claimed:
        log.info("send log import %s is not queued; nothing to do", import_id)
        return
    sendlog_import = SendLogImport.objects.select_related("created_by").get(pk=import_id)
    creator = sendlog_import.created_by
    by = Actor.for_user(creator) if creator else Actor.system("sendlog_import")
    # A refused file is an outcome, recorded on the row, not a job failure.
    with suppress(SendLogFileError):
        sendlog_import_run(sendlog_import=sendlog_import, path=upload_path(sendlog_import), by=by)


def run_audience_freeze(query_id: int) -> None:
    """Freeze a queued audience query (queued by services.audience_freeze_start).

    Claimed with a conditional UPDATE, so a second run does nothing. The freeze
    is one transaction: a failure leaves the list as it was and says why.
    """
    from incidents.filters import AudienceFilter
    from incidents.models import AudienceQuery
    from incidents.services.audience import audience_freeze

    claimed = AudienceQuery.objects.filter(pk=query_id, status=AudienceQuery.Status.QUEUED).update(
        status=AudienceQuery.Status.RUNNING
    )
    if not claimed:
        log.info("audience query %s is not queued; nothing to do", query_id)
        return
    query = AudienceQuery.objects.select_related("incident", "created_by").get(pk=query_id)
    by = Actor.for_user(query.created_by) if query.created_by else Actor.system("freeze")
    try:
        audience_freeze(
            incident=query.incident,
            filters=AudienceFilter.from_dict(query.filters),
            by=by,
            query=query,
        )
    except Exception as exc:
        log.exception("freezing audience query %s failed", query_id)
        AudienceQuery.objects.filter(pk=query_id).update(
            status=AudienceQuery.Status.FAILED, failure=f"{exc.__class__.__name__}: {exc}"[:2000]
        )
        raise
