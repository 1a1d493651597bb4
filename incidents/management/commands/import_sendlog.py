import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from incidents.models import SendLogImport
from incidents.sendlog_files import FORMATS, SendLogFileError, parse_column_map
from incidents.services.sendlog import sendlog_import_file


class Command(BaseCommand):
    help = (
        "Import a send log file (CSV or JSON Lines) from the ESP. Idempotent on message_id: "
        "importing the same file again adds nothing. See docs/sendlog-format.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--format", choices=FORMATS, default="", help="Default: from the file's extension."
        )
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=COLUMN,…",
            help="Read a field from another column, e.g. recipient=Email,message_id=MessageID.",
        )

    def handle(self, *args, **options):
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        started = time.monotonic()
        try:
            column_map = parse_column_map(",".join(options["map"]))
            imp = sendlog_import_file(
                path=path,
                file_format=options["format"],
                column_map=column_map,
                by=Actor.system("import_sendlog"),
                on_progress=self._progress_line(started),
            )
        except SendLogFileError as exc:
            self._end_progress()
            raise CommandError(f"{path.name}: {exc} Nothing was imported.") from None
        except Exception as exc:
            self._end_progress()
            raise CommandError(
                f"{path.name}: the import stopped: {exc.__class__.__name__}: {exc}. The batches "
                "before it are in (see the import's counts); running the same file again is safe."
            ) from exc
        self._end_progress()
        self._summary(imp, time.monotonic() - started)

    def _progress_line(self, started: float):
        # A one-line progress bar on a terminal; nothing in logs and pipes.
        self._shown = False
        if not getattr(sys.stderr, "isatty", lambda: False)():
            return None

        def show(imp: SendLogImport) -> None:
            rate = imp.rows_read / max(time.monotonic() - started, 1e-9)
            filled = int(imp.progress * 30)
            sys.stderr.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {imp.progress:6.1%}  "
                f"{imp.rows_read:,} rows  {rate:,.0f} rows/s  {imp.rows_rejected:,} rejected "
            )
            sys.stderr.flush()
            self._shown = True

        return show

    def _end_progress(self) -> None:
        if getattr(self, "_shown", False):
            sys.stderr.write("\n")

    def _summary(self, imp: SendLogImport, seconds: float) -> None:
        from django.conf import settings

        rate = imp.rows_read / max(seconds, 1e-9)
        self.stdout.write(
            f"Imported {imp.file_name} ({imp.file_format}) as import {imp.pk} in {seconds:.1f} s "
            f"({rate:,.0f} rows/s):\n"
            f"  rows read:      {imp.rows_read:>12,}\n"
            f"  inserted:       {imp.rows_inserted:>12,}\n"
            f"  duplicate:      {imp.rows_duplicate:>12,}  (message_id already in the send log)\n"
            f"  rejected:       {imp.rows_rejected:>12,}"
        )
        if imp.error_report:
            self.stdout.write(f"Error report: {Path(settings.MEDIA_ROOT) / imp.error_report}")
        else:
            self.stdout.write(self.style.SUCCESS("No rows were rejected."))
