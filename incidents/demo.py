"""The demo scenario: the baby-registry mis-send that Amends exists for."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from incidents import services
from incidents.actors import Actor
from incidents.models import Incident
from incidents.roles import ADMIN, AUDITOR, COMMS, SUPPORT

DEMO_PASSWORD = "amends-demo"
DEMO_USERS = {
    "support_sam": SUPPORT,
    "comms_cleo": COMMS,
    "auditor_abe": AUDITOR,
    "admin_ada": ADMIN,
}
DEMO_TITLE = "Baby registry gift notice sent to customers without a registry"


@transaction.atomic
def seed_demo() -> Incident:
    """Create the demo users and incident. Safe to run again: nothing is duplicated."""
    setup = Actor.system("demo")
    User = get_user_model()
    users = {}
    for username, role in DEMO_USERS.items():
        user = User.objects.filter(username=username).first()
        if user is None:
            user = services.user_create_with_role(
                username=username,
                email=f"{username}@retailer.example",
                password=DEMO_PASSWORD,
                role=role,
                by=setup,
            )
        users[username] = user

    existing = Incident.objects.filter(title=DEMO_TITLE).first()
    if existing:
        return existing
    sam = Actor.for_user(users["support_sam"])
    now = timezone.now()
    incident = services.incident_open(
        by=sam,
        title=DEMO_TITLE,
        summary=(
            "The registry service emailed 'Someone just bought a gift from your baby registry!' "
            "to customers who never created a registry. Some had recently lost a pregnancy; "
            "many thought the email was phishing. Every recipient must hear from us, with care."
        ),
        original_template="registry-gift-purchased",
        original_subject="Someone just bought a gift from your baby registry!",
        sent_from=now - timedelta(hours=20),
        sent_until=now - timedelta(hours=18),
        esp="Postmark",
        severity=Incident.Severity.SEV1,
        personal_data_exposed=True,
        became_aware_at=now - timedelta(hours=16),
    )
    services.incident_add_note(
        incident=incident,
        body="Registry notification job paused. Send log export requested from the ESP.",
        by=sam,
    )
    services.incident_transition(
        incident=incident,
        to_status=Incident.Status.INVESTIGATING,
        by=sam,
        note="Finding exactly who received it.",
    )
    return incident
