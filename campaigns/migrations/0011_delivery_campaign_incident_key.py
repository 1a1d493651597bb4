"""One foreign key for a delivery's campaign and incident together (PostgreSQL).

Before: one key to the campaign, one to the incident, each checked per row at
commit (Django's keys are deferred). A launch inserts a million deliveries in
one statement, and the two checks of the same campaign and incident row cost
about 19 s of its commit on a slow machine. Now (campaign_id, incident_id) refers
to the campaign's (id, incident_id): one check a row, and the database also
refuses a delivery whose incident is not its campaign's. On SQLite (the
embedded mode) the two columns keep no database key: the services set both
from the campaign. Adding the key checks every existing delivery once.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

KEY = "delivery_campaign_incident_key"


def add_key(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE campaigns_delivery ADD CONSTRAINT {KEY} "
            "FOREIGN KEY (campaign_id, incident_id) "
            "REFERENCES campaigns_campaign (id, incident_id) DEFERRABLE INITIALLY DEFERRED"
        )


def drop_key(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE campaigns_delivery DROP CONSTRAINT {KEY}")


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0010_delivery_lean_indexes'),
        ('incidents', '0011_view_metrics'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddConstraint(
            model_name='campaign',
            constraint=models.UniqueConstraint(fields=('id', 'incident'), name='campaign_id_incident'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='campaign',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='campaigns.campaign'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='incident',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='incidents.incident'),
        ),
        migrations.RunPython(add_key, drop_key, elidable=False),
    ]
