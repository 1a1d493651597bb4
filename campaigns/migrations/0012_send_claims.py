"""Hand-overs are recorded per claim (`SendClaim.handed_through`), not per delivery.

Rows that are `sending` while this runs were claimed under the old scheme; they
may be in the ESP's hands. Each group of them (one campaign and lease: one old
claim) gets a claim handed through its last id: the cautious treatment, as for
a row marked handed (evidence or `uncertain`, never resent by the machine).
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from django.db.models import Max


def claims_for_rows_in_flight(apps, schema_editor):
    Delivery = apps.get_model("campaigns", "Delivery")
    SendClaim = apps.get_model("campaigns", "SendClaim")
    in_flight = (
        Delivery.objects.filter(status="sending")
        .values("campaign_id", "lease_until")
        .annotate(last=Max("id"))
        .order_by()
    )
    for group in in_flight:
        lease = group["lease_until"] or django.utils.timezone.now()
        claim = SendClaim.objects.create(
            campaign_id=group["campaign_id"], lease_until=lease, handed_through=group["last"]
        )
        Delivery.objects.filter(
            status="sending", campaign_id=group["campaign_id"], lease_until=group["lease_until"]
        ).update(claim=claim)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0011_delivery_campaign_incident_key")]

    operations = [
        migrations.CreateModel(
            name="SendClaim",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("lease_until", models.DateTimeField()),
                (
                    "handed_through",
                    models.BigIntegerField(
                        null=True, verbose_name="last delivery id handed to the ESP"
                    ),
                ),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "campaign",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="campaigns.campaign",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="delivery",
            name="claim",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="campaigns.sendclaim",
            ),
        ),
        migrations.RunPython(claims_for_rows_in_flight, migrations.RunPython.noop),
        migrations.RemoveField(model_name="delivery", name="handed_at"),
    ]
