from django.contrib.auth.models import Group, User

from incidents.models import AuditEntry, Incident


def test_the_admin_edits_an_incident_through_the_service_and_it_is_audited(
    client, admin_ada, incident
):
    client.force_login(admin_ada)
    url = f"/admin/incidents/incident/{incident.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update(
        {
            "title": "Renamed in the back office",
            "owner": incident.owner_id,
            "severity": "SEV1",
            "personal_data_exposed": "",
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    incident.refresh_from_db()
    assert incident.title == "Renamed in the back office" and incident.severity == "SEV1"
    entry = AuditEntry.objects.filter(action="incident.updated").latest("seq")
    assert entry.actor == admin_ada
    assert entry.after == {"title": "Renamed in the back office", "severity": "SEV1"}


def test_giving_a_user_a_role_in_the_admin_is_audited(client, admin_ada, support_sam):
    client.force_login(admin_ada)
    comms = Group.objects.get(name="Comms")
    url = f"/admin/auth/user/{support_sam.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {
        name: form.initial.get(name) for name in form.fields if form.initial.get(name) is not None
    }
    data.update(
        {
            "username": "support_sam",
            "groups": [g.pk for g in support_sam.groups.all()] + [comms.pk],
            "is_active": "on",
            "date_joined_0": support_sam.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": support_sam.date_joined.strftime("%H:%M:%S"),
        }
    )
    data.pop("password", None)
    data.pop("last_login", None)
    data.pop("user_permissions", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert set(User.objects.get(pk=support_sam.pk).groups.values_list("name", flat=True)) == {
        "Support",
        "Comms",
    }
    entry = AuditEntry.objects.get(action="admin.user.changed")
    assert entry.actor == admin_ada and comms.pk in entry.after["groups"]


def test_audit_entries_cannot_be_changed_or_deleted_in_the_admin(client, admin_ada, incident):
    client.force_login(admin_ada)
    entry = AuditEntry.objects.first()
    response = client.post(f"/admin/incidents/auditentry/{entry.pk}/change/", {"action": "forged"})
    assert response.status_code == 403
    response = client.post(f"/admin/incidents/auditentry/{entry.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).action == entry.action


def test_incidents_cannot_be_deleted_in_the_admin(client, admin_ada, incident):
    client.force_login(admin_ada)
    response = client.post(f"/admin/incidents/incident/{incident.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Incident.objects.filter(pk=incident.pk).exists()


def test_every_model_of_ours_is_in_the_back_office():
    from django.apps import apps
    from django.contrib import admin

    missing = [
        model._meta.label
        for app in ("incidents", "campaigns")
        for model in apps.get_app_config(app).get_models()
        # Django's admin refuses models with a composite primary key (kept ledger lines).
        if model not in admin.site._registry and not model._meta.is_composite_pk
    ]
    assert missing == [], f"Register these in the app's admin.py: {missing}"


def test_the_back_office_lists_open_for_the_admin(client, admin_ada, incident):
    from django.contrib import admin

    client.force_login(admin_ada)
    for model in admin.site._registry:
        if model._meta.app_label in ("incidents", "campaigns"):
            url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            assert client.get(url).status_code == 200, url
