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
