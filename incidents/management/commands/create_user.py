import getpass

from django.core.management.base import BaseCommand, CommandError

from incidents import services
from incidents.actors import Actor
from incidents.roles import ROLE_NAMES


class Command(BaseCommand):
    help = "Create a user with one role (Support, Comms, Auditor or Admin)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLE_NAMES)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password",
            help="Omit to be prompted. Use --no-password for API-only or SSO users.",
        )
        parser.add_argument("--no-password", action="store_true")

    def handle(self, *args, username, role, email, password, no_password, **options):
        if not password and not no_password:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            user = services.user_create_with_role(
                username=username,
                email=email,
                password=None if no_password else password,
                role=role,
                by=Actor.system("create_user"),
            )
        except Exception as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Created {user.username} with role {role}."))
