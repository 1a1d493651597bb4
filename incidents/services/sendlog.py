"""Filling the send log: file imports, API batches, ESP events, and retention.

Every way in is idempotent on the ESP message id: a row whose message_id is
already in the log counts as a duplicate and is left as it is. File imports
commit batch by batch (with their progress), so a crash loses only the batch
in flight and running the same file again is safe.

On PostgreSQL a batch goes in with COPY into a temporary staging table, then
one INSERT … SELECT … ON CONFLICT (message_id) DO NOTHING. While the database
works on one batch, a second thread lets Python parse the next.
"""

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.text import get_valid_filename

from incidents import audit
from incidents.actors import Actor
from incidents.filters import STATUSES
from incidents.models import SendLogEntry, SendLogImport
from incidents.queue import enqueue
from incidents.sendlog_files import (
    FORMATS,
    ErrorReport,
    Row,
    RowError,
    SendLogFileError,
    check_file,
    check_head,
    clean_column_map,
    clean_mapping,
    format_from_name,
    read_batches,
)

IMPORTS_DIR = "imports"
_TABLE = SendLogEntry._meta.db_table
_COLUMNS = (
    "message_id",
    "recipient",
    "address",
    "customer_id",
    "template",
    "tags",
    "sent_at",
    "locale",
    "metadata",
)


# --- Writing batches ----------------------------------------------------------

_STAGE = "sendlog_stage_v1"
_CREATE_STAGE = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (
    message_id text, recipient text, address text, customer_id text, template text,
    tags text, sent_at timestamptz, locale text, metadata jsonb
) ON COMMIT DELETE ROWS"""
# ON CONFLICT DO NOTHING also skips a message id repeated within the batch (the
# first one read goes in); DO UPDATE would fail there instead. Built from constants only.
_INSERT_FROM_STAGE = f"""
INSERT INTO {_TABLE} ({", ".join(_COLUMNS)}, status, source, created_at)
SELECT {", ".join(_COLUMNS)}, 'sent', %s, now() FROM {_STAGE}
ON CONFLICT (message_id) DO NOTHING"""  # noqa: S608
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: list[Row]) -> bytes:
    """Rows as PostgreSQL COPY text: tab-separated, with \\ \\t \\n \\r escaped."""
    out = []
    append = out.append
    for mid, rec, addr, cust, tmpl, tags, sent, loc, meta in rows:
        line = "\t".join((mid, rec, addr, cust, tmpl, tags, sent.isoformat(), loc, meta))
        # Almost no row needs escaping; checking the joined line is four fast scans.
        if line.count("\t") != 8 or "\\" in line or "\n" in line or "\r" in line:
            line = "\t".join(
                v.translate(_COPY_ESCAPES)
                for v in (mid, rec, addr, cust, tmpl, tags, sent.isoformat(), loc, meta)
            )
        append(line)
    append("")
    return "\n".join(out).encode()


class _PostgresWriter:
    """COPY into a session's temporary staging table, then one INSERT … ON CONFLICT."""

    threaded = True

    def __init__(self):
        connection.ensure_connection()
        self.raw = connection.connection
        self._staged = False

    def transaction(self):
        # The raw psycopg connection: the writer thread cannot use Django's
        # thread-bound atomic(). Inside an outer transaction this is a savepoint.
        return self.raw.transaction()

    def prepare(self, rows: list[Row]) -> tuple[bytes, int]:
        # Python work, done on the parsing thread so the writer thread only waits on the database.
        return _copy_text(rows), len(rows)

    def insert(self, prepared: tuple[bytes, int], source: str) -> int:
        data, count = prepared
        if not count:
            return 0
        with self.raw.cursor() as cursor:
            if not self._staged:
                cursor.execute(_CREATE_STAGE)
                self._staged = True
            cursor.execute(f"TRUNCATE {_STAGE}")
            with cursor.copy(f"COPY {_STAGE} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                copy.write(data)
            cursor.execute(_INSERT_FROM_STAGE, [source])
            return cursor.rowcount

    def update_import(self, import_id: int, values: dict[str, Any]) -> None:
        sets = ", ".join(f"{name} = %s" for name in values)
        with self.raw.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SendLogImport._meta.db_table} SET {sets} WHERE id = %s",  # noqa: S608
                [*values.values(), import_id],
            )


class _SqliteWriter:
    """One INSERT OR IGNORE per row, executemany per batch (the embedded mode)."""

    threaded = False
    _sql = (
        f"INSERT OR IGNORE INTO {_TABLE} ({', '.join(_COLUMNS)}, status, source, created_at) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * (len(_COLUMNS) + 3))})"
    )

    def transaction(self):
        return transaction.atomic()

    def prepare(self, rows: list[Row]) -> list[tuple]:
        adapt = connection.ops.adapt_datetimefield_value
        return [(*row[:6], adapt(row[6]), *row[7:]) for row in rows]

    def insert(self, prepared: list[tuple], source: str) -> int:
        if not prepared:
            return 0
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.executemany(self._sql, [(*row, "sent", source, now) for row in prepared])
            return cursor.rowcount

    def update_import(self, import_id: int, values: dict[str, Any]) -> None:
        SendLogImport.objects.filter(pk=import_id).update(**values)


def _writer() -> _PostgresWriter | _SqliteWriter:
    return _PostgresWriter() if connection.vendor == "postgresql" else _SqliteWriter()


class _Pipeline:
    """Runs `work(item)` for each item put, on a second thread when `threaded`.

    Python parses batch N+1 while the database takes batch N (psycopg releases
    the GIL while it waits). At most one batch waits in the queue, so memory
    stays at about three batches. The first error stops it and is re-raised.
    """

    def __init__(self, work: Callable[[Any], None], *, threaded: bool):
        self.work, self.threaded, self.error = work, threaded, None
        if threaded:
            self.queue: queue.Queue = queue.Queue(maxsize=1)
            self.thread = threading.Thread(target=self._run, name="sendlog-writer", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.work(item)
                except BaseException as exc:  # handed to the main thread
                    self.error = exc

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        if self.threaded:
            self.queue.put(item)
        else:
            self.work(item)

    def close(self) -> None:
        if self.threaded:
            self.queue.put(None)
            self.thread.join()
        if self.error is not None:
            raise self.error


@contextmanager
def _pipeline(work: Callable[[Any], None], *, threaded: bool) -> Iterator[_Pipeline]:
    pipe = _Pipeline(work, threaded=threaded)
    try:
        yield pipe
    except BaseException:
        if threaded:  # stop the writer before the caller touches the connection again
            pipe.error = pipe.error or RuntimeError("stopped")
            pipe.queue.put(None)
            pipe.thread.join()
        raise
    pipe.close()


# --- File imports -------------------------------------------------------------


def upload_path(sendlog_import: SendLogImport) -> Path:
    return Path(settings.MEDIA_ROOT) / upload_name(sendlog_import)


def upload_name(sendlog_import: SendLogImport) -> str:
    return f"{IMPORTS_DIR}/sendlog-{sendlog_import.pk}.{sendlog_import.file_format}"


def error_report_name(sendlog_import: SendLogImport) -> str:
    return f"{IMPORTS_DIR}/sendlog-{sendlog_import.pk}-errors.csv"


def _audit_after(imp: SendLogImport) -> dict:
    return {
        "file_name": imp.file_name,
        "file_format": imp.file_format,
        "file_size": imp.file_size,
        "column_map": imp.column_map,
        "rows_read": imp.rows_read,
        "rows_inserted": imp.rows_inserted,
        "rows_duplicate": imp.rows_duplicate,
        "rows_rejected": imp.rows_rejected,
        "error_report": imp.error_report,
    }


_PROGRESS_FIELDS = [
    "rows_read",
    "rows_inserted",
    "rows_duplicate",
    "rows_rejected",
    "bytes_read",
    "error_report",
]


def _fail(imp: SendLogImport, reason: str, by: Actor) -> None:
    imp.status, imp.failure, imp.finished_at = SendLogImport.Status.FAILED, reason, timezone.now()
    with transaction.atomic():
        # The progress of the batches that were committed is on the row already.
        imp.save(update_fields=["status", "failure", "finished_at"])
        imp.refresh_from_db(fields=_PROGRESS_FIELDS)
        audit.record(
            by=by,
            action="sendlog.import_failed",
            obj=imp,
            after={**_audit_after(imp), "failure": reason[:500]},
        )


@dataclass
class _Progress:
    read: int = 0
    inserted: int = 0
    duplicate: int = 0
    rejected: int = 0
    position: int = 0


def sendlog_import_run(
    *,
    sendlog_import: SendLogImport,
    path: Path,
    by: Actor,
    on_progress: Callable[[SendLogImport], None] | None = None,
) -> SendLogImport:
    """Import the file at `path` into the send log, recording progress on `sendlog_import`.

    A file that is not UTF-8 text, or whose header does not fit the mapping,
    fails before anything is written (SendLogFileError). Bad rows go to the
    error report; good rows go in. Ends with one audit entry.
    """
    imp = sendlog_import
    if imp.status != SendLogImport.Status.RUNNING:
        imp.status = SendLogImport.Status.RUNNING
        imp.save(update_fields=["status"])
    report = ErrorReport(Path(settings.MEDIA_ROOT) / error_report_name(imp))
    try:
        with open(path, "rb") as f:
            check_file(f)
            f.seek(0)
            # The header (or first JSON object) is checked here, before any write.
            batches = read_batches(
                f,
                file_format=imp.file_format,
                column_map=imp.column_map,
                batch_rows=settings.SENDLOG_BATCH_ROWS,
                max_line_bytes=settings.SENDLOG_MAX_LINE_BYTES,
            )
            _write_batches(imp, batches, report, on_progress)
    except SendLogFileError as exc:
        report.close()
        _fail(imp, str(exc), by)
        raise
    except BaseException as exc:  # Ctrl-C too: the row must not stay "running"
        report.close()
        _fail(imp, f"The import stopped: {exc.__class__.__name__}: {exc}".rstrip(": "), by)
        raise
    report.close()
    imp.status, imp.finished_at = SendLogImport.Status.DONE, timezone.now()
    imp.bytes_read = max(imp.bytes_read, imp.file_size)
    with transaction.atomic():
        imp.save(update_fields=_PROGRESS_FIELDS + ["status", "finished_at"])
        audit.record(by=by, action="sendlog.imported", obj=imp, after=_audit_after(imp))
    return imp


def _write_batches(imp, batches, report: ErrorReport, on_progress) -> None:
    writer = _writer()
    done = _Progress()
    report_name = error_report_name(imp)

    def write(item: tuple[Any, int, _Progress]) -> None:  # on the writer thread on PostgreSQL
        prepared, count, seen = item
        with writer.transaction():
            inserted = writer.insert(prepared, SendLogEntry.Source.IMPORT)
            done.inserted += inserted
            done.duplicate += count - inserted
            writer.update_import(
                imp.pk,
                {
                    "rows_read": seen.read,
                    "rows_inserted": done.inserted,
                    "rows_duplicate": done.duplicate,
                    "rows_rejected": seen.rejected,
                    "bytes_read": seen.position,
                    "error_report": report_name if seen.rejected else "",
                },
            )

    with _pipeline(write, threaded=writer.threaded) as pipe:
        for batch in batches:
            done.read += batch.rows_read
            done.rejected += len(batch.errors)
            done.position = batch.position
            report.add(batch.errors)
            seen = _Progress(done.read, 0, 0, done.rejected, done.position)
            prepared, count = writer.prepare(batch.rows), len(batch.rows)
            batch = None  # free the rows while the next batch is read
            pipe.put((prepared, count, seen))
            if on_progress:
                imp.rows_read, imp.rows_inserted = done.read, done.inserted
                imp.rows_duplicate, imp.rows_rejected = done.duplicate, done.rejected
                imp.bytes_read = done.position
                on_progress(imp)
    imp.rows_read, imp.rows_inserted, imp.rows_duplicate = done.read, done.inserted, done.duplicate
    imp.rows_rejected, imp.bytes_read = done.rejected, done.position
    imp.error_report = report_name if done.rejected else ""


def sendlog_import_file(
    *,
    path: Path,
    file_format: str = "",
    column_map: dict[str, str] | None = None,
    by: Actor,
    on_progress: Callable[[SendLogImport], None] | None = None,
) -> SendLogImport:
    """Import a file on this machine (the import_sendlog command)."""
    path = Path(path)
    file_format = file_format or format_from_name(path.name)
    imp = SendLogImport.objects.create(
        file_name=path.name[:255],
        file_format=file_format,
        file_size=path.stat().st_size,
        column_map=clean_column_map(column_map),
        status=SendLogImport.Status.RUNNING,
        created_by=by.user,
    )
    return sendlog_import_run(sendlog_import=imp, path=path, by=by, on_progress=on_progress)


@transaction.atomic
def sendlog_import_start(
    *, uploaded_file: UploadedFile, file_format: str, column_map: dict[str, str] | None, by: Actor
) -> SendLogImport:
    """Store an uploaded send log file and queue its import. Poll the returned row for progress.

    Refuses (ValidationError) a file over SENDLOG_MAX_UPLOAD_BYTES, and one whose
    start is not UTF-8 text or whose header does not fit the mapping.
    """
    limit = settings.SENDLOG_MAX_UPLOAD_BYTES
    too_big = ValidationError(
        f"The file is larger than the limit of {filesizeformat(limit)}: split it, "
        "or import it on the server with manage.py import_sendlog."
    )
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise too_big
    try:
        name = get_valid_filename(Path(uploaded_file.name or "upload").name)[:255]
    except SuspiciousFileOperation:
        name = "upload"
    try:
        file_format = file_format or format_from_name(name)
        if file_format not in FORMATS:
            raise SendLogFileError(f"“{file_format}” is not a send log format: say csv or jsonl.")
        column_map = clean_column_map(column_map)
    except SendLogFileError as exc:
        raise ValidationError(str(exc)) from None
    imp = SendLogImport.objects.create(
        file_name=name,
        file_format=file_format,
        column_map=column_map,
        created_by=by.user,
        status=SendLogImport.Status.QUEUED,
    )
    path = upload_path(imp)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = 0
        with open(path, "wb") as out:
            for chunk in uploaded_file.chunks():
                size += len(chunk)
                if size > limit:
                    raise too_big
                out.write(chunk)
        with open(path, "rb") as f:
            check_head(f, file_format=file_format, column_map=column_map)
    except SendLogFileError as exc:
        path.unlink(missing_ok=True)
        raise ValidationError(str(exc)) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    imp.file_size = size
    imp.save(update_fields=["file_size"])
    audit.record(by=by, action="sendlog.import_queued", obj=imp, after=_audit_after(imp))
    from incidents.jobs import run_sendlog_import

    # A 2 GiB file takes minutes; give the job hours, not the queue's default 15 minutes.
    enqueue(run_sendlog_import, imp.pk, job_timeout=settings.SENDLOG_IMPORT_JOB_TIMEOUT)
    return imp


# --- API batches ----------------------------------------------------------------


@dataclass(frozen=True)
class RowProblem:
    index: int
    reason: str


@dataclass(frozen=True)
class IngestResult:
    received: int
    inserted: int
    duplicate: int
    rejected: int
    errors: list[RowProblem] = field(default_factory=list)


@transaction.atomic
def sendlog_ingest_rows(*, rows: list[dict], source: str = "api", by: Actor) -> IngestResult:
    """Add a batch of rows keyed by field name (the API). Bad rows are reported by index.

    `source` is the SendLogEntry source the rows are stored with ("api" unless
    another way in reuses this). One audit entry per batch, with counts only.
    """
    if source not in SendLogEntry.Source.values:
        raise ValueError(f"unknown send log source {source!r}")
    if not isinstance(rows, list):
        raise ValidationError("Send rows as a list of objects.")
    limit = settings.SENDLOG_API_MAX_ROWS
    if len(rows) > limit:
        raise ValidationError(f"A batch holds at most {limit} rows; this one has {len(rows)}.")
    good, problems = [], []
    for index, row in enumerate(rows):
        try:
            good.append(clean_mapping(row, strict=True))
        except RowError as exc:
            problems.append(RowProblem(index, str(exc)))
    writer = _writer()
    inserted = writer.insert(writer.prepare(good), source)
    result = IngestResult(
        received=len(rows),
        inserted=inserted,
        duplicate=len(good) - inserted,
        rejected=len(problems),
        errors=problems,
    )
    audit.record(
        by=by,
        action="sendlog.ingested",
        object_type=SendLogEntry._meta.label_lower,
        after={
            "source": source,
            "received": result.received,
            "inserted": result.inserted,
            "duplicate": result.duplicate,
            "rejected": result.rejected,
        },
    )
    return result


# --- ESP events -----------------------------------------------------------------


def sendlog_record_event(
    *,
    message_id: str,
    recipient: str,
    status: str,
    timestamp: datetime,
    template: str = "",
    tags: tuple[str, ...] | list[str] = (),
    metadata: dict | None = None,
    esp: str = "",
) -> str:
    """Record an ESP tracking event. Returns "added", "updated" or "unchanged".

    A message the log does not know is added (source "webhook", sent at the
    event's time). A known one takes the event's status as its latest status.
    Statuses outside incidents.filters.STATUSES (queued, unknown, …) change
    nothing on a known message. Raises RowError for an event that cannot be
    stored (no message id, a bad address, a naive timestamp).
    No audit entry: events are data arriving at volume, not actions.
    """
    status = (status or "").strip().lower()
    known_status = status in STATUSES
    if timestamp is None or timezone.is_naive(timestamp):
        raise RowError("the event time has no time zone")
    entries = SendLogEntry.objects.filter(message_id=(message_id or "").strip())
    # Only an event newer than the one behind the current status may replace it:
    # webhooks arrive out of order, and a late "sent" must not undo "delivered".
    newer = entries.filter(Q(status_at__isnull=True) | Q(status_at__lt=timestamp))
    if known_status and newer.update(status=status, status_at=timestamp):
        return "updated"
    if entries.exists():
        return "unchanged"
    if esp:
        metadata = {**(metadata or {}), "esp": esp}
    row = clean_mapping(
        {
            "message_id": message_id,
            "recipient": recipient,
            "template": template,
            "tags": list(tags),
            "sent_at": timestamp.isoformat(),
            "metadata": metadata or {},
        }
    )
    values = dict(zip(_COLUMNS, row, strict=True))
    values["metadata"] = metadata or {}  # the row holds it as JSON text
    entry = SendLogEntry(
        **values,
        status=status if known_status else "sent",
        status_at=timestamp,
        source=SendLogEntry.Source.WEBHOOK,
    )
    SendLogEntry.objects.bulk_create([entry], ignore_conflicts=True)
    if known_status:  # a concurrent event may have added it first; the newer status wins
        newer.update(status=status, status_at=timestamp)
    return "added"


# --- Retention ------------------------------------------------------------------


def sendlog_prune(*, days: int, by: Actor, dry_run: bool = False, batch_size: int = 10_000) -> int:
    """Delete send log entries sent more than `days` days ago, in batches. Returns the count.

    Each batch commits on its own, so memory and locks stay small; uploads and
    error reports of imports older than the cutoff are deleted too. One audit
    entry at the end (none for a dry run).
    """
    if days < 1:
        raise ValidationError("Keep at least one day of the send log.")
    cutoff = timezone.now() - timedelta(days=days)
    old = SendLogEntry.objects.filter(sent_at__lt=cutoff)
    if dry_run:
        return old.count()
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(old.order_by().values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            deleted += SendLogEntry.objects.filter(id__in=ids).delete()[0]
    files = 0
    for imp in SendLogImport.objects.filter(created_at__lt=cutoff).exclude(
        status__in=[SendLogImport.Status.QUEUED, SendLogImport.Status.RUNNING]
    ):
        for name in (upload_name(imp), error_report_name(imp)):
            path = Path(settings.MEDIA_ROOT) / name
            if path.exists():
                path.unlink()
                files += 1
        if imp.error_report:
            SendLogImport.objects.filter(pk=imp.pk).update(error_report="")
    with transaction.atomic():
        audit.record(
            by=by,
            action="sendlog.pruned",
            object_type=SendLogEntry._meta.label_lower,
            after={
                "days": days,
                "cutoff": cutoff,
                "entries_deleted": deleted,
                "files_deleted": files,
            },
        )
    return deleted
