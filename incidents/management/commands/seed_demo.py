from django.core.management.base import BaseCommand

from campaigns import selectors
from incidents.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo


class Command(BaseCommand):
    help = (
        "Create the demo users (one per role) and the baby-registry demo incident: its send "
        "log, frozen audience, segments and apologies. Safe to run again."
    )

    def handle(self, *args, **options):
        incident = seed_demo()
        people = incident.affected.filter(removed_at__isnull=True).count()
        messages = list(selectors.message_list(incident=incident))
        approved = sum(
            selectors.version_is_approved(version)
            for version in (selectors.version_latest(message=m) for m in messages)
            if version is not None
        )
        self.stdout.write(
            self.style.SUCCESS(f"Demo incident: {incident.reference} {incident.title}")
        )
        self.stdout.write(
            f"  {people} affected people in {incident.segments.count()} segments; "
            f"{len(messages)} apologies, {approved} approved."
        )
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for username, role in DEMO_USERS.items():
            self.stdout.write(f"  {username:<12} {role}")
