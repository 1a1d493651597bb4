from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from incidents.models import AuditEntry, Incident
from tests.conftest import PASSWORD


def _login(client, username, password):
    return client.post("/login/", {"username": username, "password": password})


def test_the_right_password_logs_in(client, support_sam):
    response = _login(client, "support_sam", PASSWORD)
    assert response.status_code == 302
    assert client.session.get("_auth_user_id") == str(support_sam.pk)


def test_five_failures_lock_the_account_for_fifteen_minutes(client, support_sam):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        for _ in range(4):
            assert _login(client, "support_sam", "wrong").status_code == 200
        # The fifth failure locks the account.
        assert _login(client, "support_sam", "wrong").status_code == 429

        # Even the right password is refused during the lockout.
        locked = _login(client, "support_sam", PASSWORD)
        assert locked.status_code == 429
        assert "_auth_user_id" not in client.session

        clock.shift(timedelta(minutes=14))
        assert _login(client, "support_sam", PASSWORD).status_code == 429

        clock.shift(timedelta(minutes=2))
        assert _login(client, "support_sam", PASSWORD).status_code == 302


def test_four_failures_do_not_lock_the_account(client, support_sam):
    for _ in range(4):
        _login(client, "support_sam", "wrong")
    assert _login(client, "support_sam", PASSWORD).status_code == 302


def test_pages_need_a_login(client, incident):
    response = client.get(incident.get_absolute_url())
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_create_user_command_creates_a_user_with_one_role(db):
    call_command("create_user", "cleo", "--role", "Comms", "--password", "a-long-passphrase-1")
    user = User.objects.get(username="cleo")
    assert list(user.groups.values_list("name", flat=True)) == ["Comms"]
    assert user.check_password("a-long-passphrase-1")
    assert not user.is_staff
    assert user.has_perm("incidents.transition_incident")
    assert not user.has_perm("incidents.add_incident")
    entry = AuditEntry.objects.get(action="user.created")
    assert entry.after == {"username": "cleo", "role": "Comms", "is_staff": False}


def test_create_user_gives_admins_the_back_office(db):
    call_command("create_user", "ada", "--role", "Admin", "--no-password")
    assert User.objects.get(username="ada").is_staff


def test_create_user_refuses_a_weak_password_and_creates_nothing(db):
    with pytest.raises(CommandError, match="too short|too common"):
        call_command("create_user", "weak", "--role", "Support", "--password", "abc")
    assert not User.objects.filter(username="weak").exists()


def test_create_user_refuses_an_unknown_role(db):
    with pytest.raises(CommandError):
        call_command("create_user", "x", "--role", "Wizard", "--no-password")


def test_the_demo_tells_the_baby_registry_story_and_can_run_twice(db, capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    output = capsys.readouterr().out
    assert "support_sam" in output and "amends-demo" in output
    incident = Incident.objects.get()
    assert "baby registry" in incident.original_subject.lower()
    assert incident.personal_data_exposed and incident.regulator_deadline
    assert (
        User.objects.filter(
            username__in=["support_sam", "comms_cleo", "auditor_abe", "admin_ada"]
        ).count()
        == 4
    )


def test_demo_logins_work(client, db):
    call_command("seed_demo")
    for username in ["support_sam", "comms_cleo", "auditor_abe", "admin_ada"]:
        client.logout()
        assert _login(client, username, "amends-demo").status_code == 302, username
