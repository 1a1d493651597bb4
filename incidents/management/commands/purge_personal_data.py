from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from incidents.export.retention import purge_personal_data


class Command(BaseCommand):
    help = (
        "Remove personal data (addresses, names, raw ESP recipients, outbox copies, send-log "
        "rows) from incidents resolved more than --days days ago. Pseudonyms, counts and the "
        "audit trail stay, so evidence packs can still be made and verified. Audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, required=True)

    def handle(self, *args, days: int, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        results = purge_personal_data(days=days, by=Actor.system("purge_personal_data"))
        for r in results:
            self.stdout.write(
                f"{r.reference}: {r.people:,} people pseudonymised, {r.deliveries:,} deliveries, "
                f"{r.events:,} ESP events, {r.outbox_messages:,} outbox copies, "
                f"{r.sendlog_entries:,} send-log rows deleted."
            )
        self.stdout.write(f"Purged {len(results)} incident(s) resolved more than {days} days ago.")
