"""Delivery tracking: soft-bounce retries, and finding a delivery by its ESP message id."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0008_delivery_handed_at'),
    ]

    operations = [
        migrations.AddField(
            model_name='delivery',
            name='soft_bounces',
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        migrations.AddIndex(
            model_name='delivery',
            index=models.Index(fields=['esp_message_id'], name='delivery_esp_message_id'),
        ),
    ]
