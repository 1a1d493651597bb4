"""The hand-over marker: `Delivery.handed_at`, set right before the ESP call.

With it the sweeper can queue again a claimed row that was never handed to the
ESP, instead of calling it uncertain. Rows that are `sending` while this runs
were claimed by workers that did not set the marker yet; they may be in the
ESP's hands, so they are marked handed (the old, cautious treatment: evidence
or `uncertain`, never resent by the machine).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0007_delivery_events")]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="handed_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="handed to the ESP"),
        ),
        migrations.RunSQL(
            "UPDATE campaigns_delivery SET handed_at = updated_at WHERE status = 'sending'",
            migrations.RunSQL.noop,
        ),
    ]
