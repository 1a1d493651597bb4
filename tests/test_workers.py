"""The rq worker loads the jobs' code before it forks, so a work horse does not load it again.

rq forks a work horse for every job. What the horse imports dies with it, so
without the preload every send job paid for importing the sending code and
its services again (config/workers.py). Each run here is a fresh Python
process, as a worker is, on this test's database.
"""

import json
import os
import subprocess
import sys

import django_rq.workers

from campaigns.models import Delivery
from config.workers import Worker
from tests.chaos_workers import ROOT, database_url
from tests.conftest import requires_postgres
from tests.deliveries import deliver, make_campaign

# A worker's life in one process: Django set up, maybe the preload, then one send job.
_JOB = """
import gc, json, sys
import django
django.setup()
from config.workers import preload
if sys.argv[1] == "preload":
    preload()
before = set(sys.modules)
from django.utils.module_loading import import_string
import_string("campaigns.jobs.send_batch")(*map(int, sys.argv[2:]))
print(json.dumps([sorted(set(sys.modules) - before), gc.get_freeze_count()]))
"""
OURS = ("campaigns.", "incidents.", "config.", "anymail.backends.", "rest_framework.")


def _run_send_job(mode: str, campaign, first_id: int, last_id: int) -> tuple[list[str], int]:
    """The modules of ours, anymail's backends and DRF that the job imported; objects frozen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEND_", "PYTEST"))}
    env.pop("REDIS_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        AMENDS_NO_BOOTSTRAP="1",
        DATABASE_URL=database_url(),
        MAIL_BACKEND="anymail.backends.test.EmailBackend",
    )
    result = subprocess.run(
        [sys.executable, "-c", _JOB, mode, str(campaign.pk), str(first_id), str(last_id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported, frozen = json.loads(result.stdout.strip().splitlines()[-1])
    return [name for name in imported if name.startswith(OURS)], frozen


@requires_postgres
def test_a_preloaded_worker_leaves_a_send_job_nothing_of_ours_to_import_and_it_still_sends(
    transactional_audit, incident
):
    campaign = make_campaign(incident)
    first = deliver(campaign, status=Delivery.Status.QUEUED, name="ann")
    last = deliver(campaign, status=Delivery.Status.QUEUED, name="bob")

    imported, frozen_bare = _run_send_job("bare", campaign, first.pk, first.pk)
    assert "campaigns.sending.worker" in imported  # what the preload saves every horse
    imported, frozen = _run_send_job("preload", campaign, last.pk, last.pk)
    assert imported == []
    # Django, the apps and the job code, out of the horses' collector.
    assert frozen > frozen_bare + 10_000

    first.refresh_from_db()
    last.refresh_from_db()
    assert (first.status, last.status) == (Delivery.Status.SENT, Delivery.Status.SENT)


def test_the_rqworker_command_runs_the_preloading_worker():
    assert django_rq.workers.get_worker_class() is Worker
