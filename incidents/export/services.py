"""Requesting, building, downloading and expiring evidence packs. Each step is audited.

`export_request` queues a pack (the web page and the API); the job calls
`export_build`; `export_download` hands out the zip of a finished pack that
has not expired; `exports_expire` deletes expired files. `export_to_directory`
is the command line's synchronous export into a directory of the operator's.
"""

import logging
import shutil
import zipfile
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from incidents import audit
from incidents.actors import Actor
from incidents.export.pack import FORMATS, PackResult, write_pack
from incidents.models import AffectedPerson, EvidenceExport, Incident
from incidents.queue import enqueue

EXPORT_PII = "incidents.export_pii"
log = logging.getLogger(__name__)


def _check_request(*, fmt: str, pii: bool, reason: str, by: Actor) -> str:
    if fmt not in FORMATS:
        raise ValidationError(
            {"format": f"“{fmt}” is not a pack format: choose csv, jsonl or pdf."}, code="invalid"
        )
    reason = (reason or "").strip()
    if pii:
        # Commands act as the system (an operator on the server); people need the permission.
        if by.user is not None and not by.user.has_perm(EXPORT_PII):
            raise PermissionDenied(f"Your role does not allow this ({EXPORT_PII}).")
        if not reason:
            raise ValidationError(
                {"reason": "Say why this export needs the addresses."}, code="reason_required"
            )
    return reason


def _audit_after(export: EvidenceExport) -> dict:
    return {"format": export.format, "pii": export.pii, "reason": export.reason}


def export_directory(export: EvidenceExport) -> Path:
    # Named from the row alone, never from a request.
    return Path(settings.EXPORT_ROOT) / f"{export.incident.reference}-export-{export.pk}"


def export_zip(export: EvidenceExport) -> Path:
    return export_directory(export).with_suffix(".zip")


@transaction.atomic
def export_request(
    *, incident: Incident, fmt: str, pii: bool = False, reason: str = "", by: Actor
) -> EvidenceExport:
    """Queue an evidence pack. A PII pack needs incidents.export_pii and a reason."""
    reason = _check_request(fmt=fmt, pii=pii, reason=reason, by=by)
    now = timezone.now()
    export = EvidenceExport.objects.create(
        incident=incident,
        format=fmt,
        pii=pii,
        reason=reason,
        created_by=by.user,
        created_at=now,
        expires_at=now + timedelta(days=settings.EXPORT_TTL_DAYS),
        rows_total=AffectedPerson.objects.filter(incident=incident).count(),
    )
    export.path = export_directory(export).name
    export.save(update_fields=["path"])
    audit.record(
        by=by,
        action="evidence.export_requested",
        obj=export,
        incident=incident,
        after=_audit_after(export),
    )
    from incidents.export.jobs import run_evidence_export

    enqueue(
        run_evidence_export, export.pk, queue="exports", job_timeout=settings.EXPORT_JOB_TIMEOUT
    )
    return export


def _exported_after(result: PackResult, *, fmt: str, pii: bool, reason: str) -> dict:
    head = result.manifest["audit_head"]
    return {
        "format": fmt,
        "pii": pii,
        "reason": reason,
        "manifest_sha256": result.manifest_sha256,
        "audit_head_seq": head["seq"],
        "audit_head_hash": head["hash"],
        "people": result.people,
        "files": [f["name"] for f in result.manifest["files"]],
    }


def export_build(*, export: EvidenceExport, by: Actor) -> EvidenceExport:
    """Write the pack of a claimed (running) export, zip it and record it. Not one transaction:
    progress must be visible while it runs; a failure is recorded on the row by the job."""
    directory = export_directory(export)
    shutil.rmtree(directory, ignore_errors=True)  # a crashed earlier run of this job
    export_zip(export).unlink(missing_ok=True)

    side = _SideConnection()

    def progress(rows: int, busy: bool = False) -> None:
        if busy:  # this connection is streaming a COPY: tell the row through another
            side.update(export.pk, rows)
        else:
            EvidenceExport.objects.filter(pk=export.pk).update(rows_done=rows)

    try:
        result = write_pack(
            incident=export.incident,
            directory=directory,
            fmt=export.format,
            pii=export.pii,
            reason=export.reason,
            by_label=by.label,
            on_progress=progress,
        )
    finally:
        side.close()
    with zipfile.ZipFile(export_zip(export), "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(directory.iterdir()):
            zf.write(path, f"{directory.name}/{path.name}")
    head = result.manifest["audit_head"]
    with transaction.atomic():
        export.status, export.finished_at = EvidenceExport.Status.DONE, timezone.now()
        export.rows_done, export.size_bytes = result.people, export_zip(export).stat().st_size
        export.sha256, export.head_seq, export.head_hash = (
            result.manifest_sha256,
            head["seq"],
            head["hash"],
        )
        export.save(
            update_fields=[
                "status",
                "finished_at",
                "rows_done",
                "size_bytes",
                "sha256",
                "head_seq",
                "head_hash",
            ]
        )
        audit.record(
            by=by,
            action="evidence.exported",
            obj=export,
            incident=export.incident,
            after=_exported_after(result, fmt=export.format, pii=export.pii, reason=export.reason),
        )
    return export


class _SideConnection:
    """A second database connection, opened on first use, for progress during a COPY."""

    def __init__(self):
        self.connection = None

    def update(self, export_id: int, rows: int) -> None:
        from django.db import DatabaseError, connections

        try:
            if self.connection is None:
                self.connection = connections.create_connection("default")
            with self.connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {EvidenceExport._meta.db_table} SET rows_done = %s WHERE id = %s",  # noqa: S608
                    [rows, export_id],
                )
        except DatabaseError:
            log.warning("could not record the progress of evidence export %s", export_id)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def export_fail(*, export_id: int, failure: str, by: Actor) -> None:
    export = EvidenceExport.objects.select_related("incident").get(pk=export_id)
    shutil.rmtree(export_directory(export), ignore_errors=True)
    export_zip(export).unlink(missing_ok=True)
    with transaction.atomic():
        EvidenceExport.objects.filter(pk=export_id).update(
            status=EvidenceExport.Status.FAILED, failure=failure[:2000], finished_at=timezone.now()
        )
        audit.record(
            by=by,
            action="evidence.export_failed",
            obj=export,
            incident=export.incident,
            after={**_audit_after(export), "failure": failure[:500]},
        )


@transaction.atomic
def export_download(*, export: EvidenceExport, by: Actor) -> Path:
    """The zip to hand out, with an audit entry; refused once expired or before it is ready."""
    if export.pii and by.user is not None and not by.user.has_perm(EXPORT_PII):
        raise PermissionDenied(f"Your role does not allow this ({EXPORT_PII}).")
    if export.is_expired():
        raise ValidationError("This pack has expired and its files are deleted.", code="expired")
    path = export_zip(export)
    if export.status != EvidenceExport.Status.DONE or not path.is_file():
        raise ValidationError("This pack is not ready.", code="not_ready")
    audit.record(
        by=by,
        action="evidence.downloaded",
        obj=export,
        incident=export.incident,
        after={"manifest_sha256": export.sha256, "pii": export.pii},
    )
    return path


def exports_expire(*, by: Actor, now=None) -> int:
    """Delete the files of every pack past its expiry; returns how many packs expired."""
    now = now or timezone.now()
    expired = 0
    due = EvidenceExport.objects.filter(expires_at__lte=now).exclude(
        status__in=[EvidenceExport.Status.EXPIRED, EvidenceExport.Status.RUNNING]
    )
    for export in due.select_related("incident"):
        shutil.rmtree(export_directory(export), ignore_errors=True)
        export_zip(export).unlink(missing_ok=True)
        with transaction.atomic():
            EvidenceExport.objects.filter(pk=export.pk).update(status=EvidenceExport.Status.EXPIRED)
            audit.record(
                by=by,
                action="evidence.expired",
                obj=export,
                incident=export.incident,
                after={"manifest_sha256": export.sha256, "expires_at": export.expires_at},
            )
        expired += 1
    return expired


def export_to_directory(
    *,
    incident: Incident,
    directory: Path,
    fmt: str,
    pii: bool = False,
    reason: str = "",
    by: Actor,
    on_progress=lambda rows, busy=False: None,
) -> PackResult:
    """Write a pack straight into `directory` (the export_incident command), audited."""
    reason = _check_request(fmt=fmt, pii=pii, reason=reason, by=by)
    result = write_pack(
        incident=incident,
        directory=Path(directory),
        fmt=fmt,
        pii=pii,
        reason=reason,
        by_label=by.label,
        on_progress=on_progress,
    )
    with transaction.atomic():
        audit.record(
            by=by,
            action="evidence.exported",
            obj=incident,
            incident=incident,
            after=_exported_after(result, fmt=fmt, pii=pii, reason=reason),
        )
    return result
