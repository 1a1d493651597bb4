from django.core.management.base import BaseCommand, CommandError

from incidents.audit import verify_chain


class Command(BaseCommand):
    help = "Recompute the audit hash chain and name the first broken entry."

    def handle(self, *args, **options):
        report = verify_chain()
        if report.ok:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Audit chain intact: {report.checked} entries, head {report.head_hash}."
                )
            )
            return
        raise CommandError(
            f"Audit chain broken at entry #{report.broken.seq}: {report.broken.reason}. "
            f"{report.checked} entries before it verified."
        )
