from django.core.management.base import BaseCommand

from incidents.export.jobs import run_expire_exports


class Command(BaseCommand):
    help = "Delete the files of evidence packs past their expiry (EXPORT_TTL_DAYS). Run daily."

    def handle(self, *args, **options):
        count = run_expire_exports()
        self.stdout.write(f"Expired {count} evidence pack(s).")
