from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # anymail delivers parsed webhook events as a signal; the receiver is a
        # one-line hand-over to campaigns.tracking, where the logic lives.
        from anymail.signals import tracking

        from campaigns.tracking import on_tracking

        tracking.connect(on_tracking, dispatch_uid="amends-tracking")
