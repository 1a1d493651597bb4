from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from incidents.export.pack import FORMATS
from incidents.export.services import export_to_directory
from incidents.models import Incident


class Command(BaseCommand):
    help = (
        "Write an incident's evidence pack into --out (a new or empty directory). "
        "Addresses are pseudonymised unless --pii is given with --reason. Audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("reference", help="The incident, e.g. INC-2026-0001.")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--out", required=True, help="Directory for the pack.")
        parser.add_argument("--pii", action="store_true", help="Include addresses and names.")
        parser.add_argument("--reason", default="", help="Why addresses are needed (with --pii).")

    def handle(self, *args, reference, format, out, pii, reason, **options):
        incident = Incident.objects.filter(reference=reference).first()
        if incident is None:
            raise CommandError(f"No incident {reference}.")
        if pii and not reason.strip():
            raise CommandError("--pii needs --reason: say why this export needs the addresses.")

        def progress(rows: int, busy: bool = False) -> None:
            if options["verbosity"] > 1:
                self.stderr.write(f"  {rows:,} people written")

        try:
            result = export_to_directory(
                incident=incident,
                directory=Path(out),
                fmt=format,
                pii=pii,
                reason=reason,
                by=Actor.system("export_incident"),
                on_progress=progress,
            )
        except (ValidationError, PermissionDenied, FileExistsError) as exc:
            raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from exc
        head = result.manifest["audit_head"]
        self.stdout.write(
            f"Wrote the {format} pack of {reference} ({result.people:,} people, "
            f"{len(result.manifest['files'])} files) to {result.directory}; "
            f"manifest SHA-256 {result.manifest_sha256}, audit head #{head['seq']}."
        )
