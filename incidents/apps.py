from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _sync_roles(sender, using, **kwargs):
    # Permissions only exist after post_migrate created them, so the roles are
    # synced from here, the same hook Django uses to create permissions.
    from incidents.roles import sync_roles

    sync_roles(using=using)


class IncidentsConfig(AppConfig):
    name = "incidents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Once, after the last app's post_migrate, when every app's permissions exist
        # (campaigns is installed after incidents). Django sends post_migrate for each
        # app with models, after `migrate` and after each test that commits (its flush).
        last = [config for config in apps.get_app_configs() if config.models_module][-1]
        post_migrate.connect(_sync_roles, sender=last, dispatch_uid="amends-sync-roles")
