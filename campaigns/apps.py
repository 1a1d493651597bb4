from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.utils.module_loading import import_string

# What send and webhook jobs import. rq forks a fresh work horse per job; what
# the parent worker imported at start is inherited, what it did not is imported
# again in every horse (about 150 ms of CPU per job, 300 µs per message at 500
# messages a job: see docs/performance.md).
_JOB_MODULES = (
    "campaigns.jobs",
    "campaigns.sending.worker",
    "campaigns.tracking.apply",
    "incidents.jobs",
)


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # anymail delivers parsed webhook events as a signal; the receiver is a
        # one-line hand-over to campaigns.tracking, where the logic lives.
        from anymail.signals import tracking

        from campaigns.tracking import on_tracking

        tracking.connect(on_tracking, dispatch_uid="amends-tracking")
        for module in _JOB_MODULES:
            import_module(module)
        for mailer in settings.MAILERS.values():
            import_string(mailer["BACKEND"])  # the ESP backend and its HTTP client
