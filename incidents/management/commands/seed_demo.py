from django.core.management.base import BaseCommand

from incidents.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo


class Command(BaseCommand):
    help = "Create the demo users (one per role) and the baby-registry demo incident."

    def handle(self, *args, **options):
        incident = seed_demo()
        self.stdout.write(
            self.style.SUCCESS(f"Demo incident: {incident.reference} {incident.title}")
        )
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for username, role in DEMO_USERS.items():
            self.stdout.write(f"  {username:<12} {role}")
