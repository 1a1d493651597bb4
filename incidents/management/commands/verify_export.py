from django.core.management.base import BaseCommand, CommandError

from incidents.export.verify import verify_pack


class Command(BaseCommand):
    help = (
        "Check an evidence pack: each file against manifest.json, the manifest against the "
        "audit trail, and the audit chain itself. Exits non-zero on any difference."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", help="The pack's directory (unzipped).")

    def handle(self, *args, directory, **options):
        report = verify_pack(directory)
        if report.ok:
            head = report.manifest["audit_head"]
            self.stdout.write(
                self.style.SUCCESS(
                    f"Pack verified: {report.files_checked} files match the manifest, "
                    f"{report.timeline_checked} timeline entries match the audit trail, "
                    f"head #{head['seq']} {head['hash']} is in the intact chain."
                )
            )
            return
        for problem in report.problems:
            self.stderr.write(f"- {problem}")
        raise CommandError(f"Pack verification FAILED: {len(report.problems)} problem(s).")
