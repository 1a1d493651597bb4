"""Shared fixtures: one named user per role, created through the real services."""

import pytest
from django.db import connection

from incidents import services
from incidents.actors import Actor
from incidents.roles import ADMIN, AUDITOR, COMMS, SUPPORT

PASSWORD = "correct horse battery staple"
SETUP = Actor.system("tests")


def pytest_report_header(config):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    queue = "rq on Redis" if settings.REDIS_URL else "in-process jobs"
    return f"amends: database={engine} queue={queue}"


def _make(username: str, role: str):
    return services.user_create_with_role(
        username=username,
        email=f"{username}@amends.example",
        password=PASSWORD,
        role=role,
        by=SETUP,
    )


@pytest.fixture
def support_sam(db):
    return _make("support_sam", SUPPORT)


@pytest.fixture
def comms_cleo(db):
    return _make("comms_cleo", COMMS)


@pytest.fixture
def auditor_abe(db):
    return _make("auditor_abe", AUDITOR)


@pytest.fixture
def admin_ada(db):
    return _make("admin_ada", ADMIN)


@pytest.fixture
def incident(support_sam):
    return services.incident_open(
        by=Actor.for_user(support_sam),
        title="Baby registry gift notice sent to the wrong customers",
        summary="A registry notification went to customers without a registry.",
        original_template="registry-gift-purchased",
        original_subject="Someone just bought a gift from your baby registry!",
        severity="SEV2",
    )


@pytest.fixture
def login(client):
    """Log the client in as `user`; returns the client."""

    def _login(user):
        client.force_login(user)
        return client

    return _login


requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL-only behaviour"
)


@pytest.fixture
def transactional_audit(transactional_db):
    """For tests that commit: empty the append-only audit table afterwards.

    The PostgreSQL triggers refuse to truncate a non-empty audit table, which is
    the point; the test database is the one place we switch them off to clean up.
    """
    yield
    from incidents.models import AuditEntry

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE incidents_auditentry DISABLE TRIGGER USER")
            cursor.execute("DELETE FROM incidents_auditentry")
            cursor.execute("ALTER TABLE incidents_auditentry ENABLE TRIGGER USER")
        else:
            AuditEntry.objects.all().delete()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The real hasher is slow by design; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Every webhook request queues its apply job at once, so `run_jobs` finds it; the
    # once-per-interval push has its own tests (test_tracking.py).
    settings.APPLY_PUSH_SECONDS = 0
    settings.APPLY_GATHER_SECONDS = 0


@pytest.fixture(autouse=True)
def _fresh_local_limiter(monkeypatch):
    """Embedded mode's in-process rate buckets, 429 holds and slow-ESP memory, per test.

    (With Redis, each sending test has a key prefix of its own.)
    """
    from campaigns.sending import limits

    monkeypatch.setattr(limits, "_local_limiter", limits._LocalLimiter())


@pytest.fixture(scope="session", autouse=True)
def _empty_queues():
    """With REDIS_URL, start from empty queues: a job left by an earlier run is not ours."""
    from django.conf import settings

    if settings.REDIS_URL:
        import django_rq

        for name in settings.RQ_QUEUES:
            django_rq.get_queue(name).empty()


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks):
    """`with run_jobs(): …` runs the jobs the block queued, as production would.

    With REDIS_URL the jobs go to Redis on commit and a real rq worker runs them
    (in burst mode, in this process, so it shares the test's transaction); without
    it they run in-process on commit, the embedded mode.
    """
    from contextlib import contextmanager

    from django.conf import settings

    @contextmanager
    def _run():
        with django_capture_on_commit_callbacks(execute=True):
            yield
        if settings.REDIS_URL:
            import django_rq
            from rq import SimpleWorker

            worker = django_rq.get_worker(*settings.RQ_QUEUES, worker_class=SimpleWorker)
            worker.work(burst=True)

    return _run


@pytest.fixture
def postmark_stub():
    """The local Postmark stand-in (tests/esp_stub.py), listening; stopped after the test."""
    from tests.esp_stub import PostmarkStub

    stub = PostmarkStub().start()
    yield stub
    stub.stop()
