"""Seed the end-to-end stack's database: the four demo users and the demo's send log.

Run by tests/e2e/stack.py in a subprocess against the stack's own database
(`python -m tests.e2e.seed`). Nothing else is seeded: the story opens the
incident, freezes the audience, segments it and writes the apologies in the
browser. Prints the registry email's sending window as JSON, for the forms.
"""

import json
from datetime import timedelta
from types import SimpleNamespace


def main() -> None:
    import django

    django.setup()
    from django.utils import timezone

    from incidents import demo, services
    from incidents.actors import Actor

    setup = Actor.system("e2e seed")
    demo._users(setup)
    # The send log exists before anyone opens the incident: it came from the ESP.
    now = timezone.now().replace(second=0, microsecond=0)
    window = SimpleNamespace(
        sent_from=now - timedelta(hours=20), sent_until=now - timedelta(hours=18)
    )
    services.sendlog_ingest_rows(rows=demo._sendlog_rows(window), source="api", by=setup)
    print(
        json.dumps(
            {
                "sent_from": window.sent_from.isoformat(),
                "sent_until": window.sent_until.isoformat(),
                "password": demo.DEMO_PASSWORD,
            }
        )
    )


if __name__ == "__main__":
    main()
