from django.contrib.auth.models import Group, Permission

from incidents.roles import ROLE_PERMISSIONS


def test_every_permission_a_role_names_exists(db):
    existing = {
        f"{app}.{codename}"
        for app, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }
    unknown = sorted({p for perms in ROLE_PERMISSIONS.values() for p in perms} - existing)
    assert unknown == [], f"incidents/roles.py names permissions that do not exist: {unknown}"


def test_each_role_group_holds_exactly_its_permissions(db):
    for role, perms in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        held = {
            f"{p.content_type.app_label}.{p.codename}"
            for p in group.permissions.select_related("content_type")
        }
        assert held == set(perms), role


def test_an_auditor_holds_no_permission_to_change_anything(db):
    writes = [p for p in ROLE_PERMISSIONS["Auditor"] if not p.split(".")[1].startswith("view_")]
    # Exporting an evidence pack changes no incident data; it is itself audited.
    assert writes == ["incidents.verify_audit", "incidents.export_evidence"]
