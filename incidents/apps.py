from django.apps import AppConfig
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
        # After every app's post_migrate, not just ours: campaigns is installed after
        # incidents, so its permissions (suppressions) only exist once its turn came.
        post_migrate.connect(_sync_roles, dispatch_uid="amends-sync-roles")
