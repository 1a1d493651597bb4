"""Data for the sending benchmarks: a database of their own, people frozen the real way, an apology.

Used by bench_launch.py and bench_send.py. Each run gets a fresh database copied
from a migrated template (`CREATE DATABASE … TEMPLATE`, a second instead of a
full migrate), so the append-only audit table and a million deliveries from
the last run never slow the next one down.

The send log is written by one INSERT … SELECT over generate_series (a real
export would come through import_sendlog; bench_import.py measures that), then
frozen through `audience_freeze`, exactly as staff would: the people, their
segment and the freshly frozen list without planner statistics are what
production launches from.
"""

import os
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from bench.common import DATA, PYTHON, ROOT, ensure_database, psql

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/amends_bench_send"
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"
TEMPLATE = "registry-gift-purchased"
LOCALES = ("en", "de", "fr", "nl", "de-at", "")

# The apology of tests/test_sending.py, a little longer: three parts in English
# (subject, text, HTML), German without HTML, French with HTML only (text derived).
CONTENT = {
    "en": {
        "subject": "We sent you an email by mistake",
        "text": (
            "Dear {{ first_name|default('customer') }},\n\n"
            "on {{ original_send_date }} we sent you an email about a baby registry gift. "
            "It was meant for someone else, and we are sorry for the confusion.\n\n"
            "Nothing about your account has changed. Your verification code is "
            "{{ verification_code }}; quote it if you contact us.\n\n"
            "{{ company_name }} (reference {{ incident_reference }})"
        ),
        "html": (
            "<p>Dear {{ first_name|default('customer') }},</p>"
            "<p>on {{ original_send_date }} we sent you an email about a baby registry gift. "
            "It was meant for someone else, and we are sorry for the confusion.</p>"
            "<p>Nothing about your account has changed. Your verification code is "
            "<strong>{{ verification_code }}</strong>; quote it if you contact us.</p>"
            "<p>{{ company_name }} (reference {{ incident_reference }})</p>"
        ),
    },
    "de": {
        "subject": "Wir haben Ihnen versehentlich eine E-Mail geschickt",
        "text": (
            "Liebe/r {{ first_name|default('Kundin, lieber Kunde') }},\n\n"
            "am {{ original_send_date }} haben wir Ihnen versehentlich eine E-Mail geschickt. "
            "Ihr Bestätigungscode: {{ verification_code }}.\n\n{{ company_name }}"
        ),
        "html": "",
    },
    "fr": {
        "subject": "Nous vous avons envoyé un e-mail par erreur",
        "text": "",
        "html": (
            "<p>Bonjour {{ first_name|default('') }},</p><p>le {{ original_send_date }} "
            "nous vous avons envoyé un e-mail par erreur. Code : "
            "{{ verification_code }}.</p><p>{{ company_name }}</p>"
        ),
    },
}


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)


def _with_name(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def fresh_database(url: str) -> None:
    """Drop and recreate `url`'s database as a copy of a migrated template of its own."""
    name = urlsplit(url).path.lstrip("/")
    template = _with_name(url, f"{name}_template")
    admin = _with_name(url, "postgres")
    ensure_database(template)
    env = dict(os.environ, DATABASE_URL=template, AMENDS_NO_BOOTSTRAP="1")
    env.setdefault("AMENDS_VAR_DIR", str(DATA / "var"))
    env.pop("REDIS_URL", None)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input", "-v0", "--skip-checks"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    psql(admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin, "-c", f'CREATE DATABASE "{name}" TEMPLATE "{name}_template"')


def setup_django(url: str, redis: str | None, **settings_env: str) -> None:
    """Configure this process for `url` (and rq on `redis`, or in-process jobs)."""
    sys.path.insert(0, str(ROOT))
    os.environ["DATABASE_URL"] = url
    if redis:
        os.environ["REDIS_URL"] = redis
    else:
        os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("AMENDS_VAR_DIR", str(DATA / "var"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.update(settings_env)
    import django

    django.setup()


def make_people(people: int) -> dict:
    """An incident with `people` affected people in one segment and an approved apology.

    Returns {"incident", "segment", "version", "support", "freeze_seconds"}.
    """
    from django.db import connection

    from bench.common import approved_version, staff_and_incident
    from incidents import services
    from incidents.actors import Actor
    from incidents.filters import AudienceFilter
    from incidents.services.audience import default_segment

    support, comms, incident = staff_and_incident(
        title="Baby registry gift notice sent to the wrong customers",
        summary="Benchmark incident.",
        original_template=TEMPLATE,
        original_subject="Someone just bought a gift from your baby registry!",
        severity="SEV2",
    )
    locales = "ARRAY[" + ", ".join(f"'{locale}'" for locale in LOCALES) + "]"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO incidents_sendlogentry (
                message_id, recipient, address, customer_id, template, tags, sent_at, locale,
                metadata, status, source, created_at
            )
            SELECT 'bench-' || i, 'Person' || i || '@Example.com', 'person' || i || '@example.com',
                   'C' || i, %s, '', timestamptz '2026-11-28 09:00+00' + i * interval '1 ms',
                   ({locales})[1 + i %% {len(LOCALES)}],
                   jsonb_build_object('first_name', 'Pat' || i, 'has_registry', false),
                   'sent', 'import', now()
            FROM generate_series(1, %s) AS i
            """,  # noqa: S608 (constants)
            [TEMPLATE, people],
        )
    started = time.monotonic()
    services.audience_freeze(
        incident=incident,
        filters=AudienceFilter.from_dict({"template": TEMPLATE}),
        by=Actor.for_user(support),
    )
    freeze_seconds = time.monotonic() - started
    segment = default_segment(incident)
    version = approved_version(
        segment=segment,
        support=support,
        comms=comms,
        sender_name="Amends Care",
        sender_address="care@retailer.example",
        reply_to="help@retailer.example",
        fallback_locale="en",
        content=CONTENT,
    )
    return {
        "incident": incident,
        "segment": segment,
        "version": version,
        "support": support,
        "freeze_seconds": freeze_seconds,
    }


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"
