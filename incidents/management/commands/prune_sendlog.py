from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from incidents.services.sendlog import sendlog_prune


class Command(BaseCommand):
    help = (
        "Delete send log entries sent more than --days days ago (default SENDLOG_RETENTION_DAYS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=settings.SENDLOG_RETENTION_DAYS)
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args, days: int, dry_run: bool, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        count = sendlog_prune(days=days, by=Actor.system("prune_sendlog"), dry_run=dry_run)
        if dry_run:
            self.stdout.write(f"{count:,} send log entries are older than {days} days (dry run).")
        else:
            self.stdout.write(f"Deleted {count:,} send log entries older than {days} days.")
