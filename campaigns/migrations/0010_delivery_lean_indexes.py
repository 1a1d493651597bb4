"""Two indexes fewer on deliveries, each written again by every update while a row is sent.

The campaign's own index is served by (campaign, status) and (campaign, person).
`unique=True` on the verification code also made a pattern-matching (`_like`) index
on PostgreSQL; a named UniqueConstraint keeps the uniqueness without it. Rebuilding
the unique index takes a few seconds per million deliveries, under a table lock.
"""

import campaigns.models.sending
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0009_delivery_tracking'),
        ('incidents', '0011_view_metrics'),
    ]

    operations = [
        migrations.AlterField(
            model_name='delivery',
            name='campaign',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='campaigns.campaign'),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='verification_code',
            field=models.CharField(default=campaigns.models.sending.new_verification_code, max_length=16),
        ),
        migrations.AddConstraint(
            model_name='delivery',
            constraint=models.UniqueConstraint(fields=('verification_code',), name='delivery_verification_code'),
        ),
    ]
