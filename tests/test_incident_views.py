"""The staff web UI for incidents, tested as a person using it would notice."""

import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from incidents import services
from incidents.actors import Actor
from incidents.models import AuditEntry, Incident, TimelineEntry
from tests.conftest import PASSWORD

User = get_user_model()

LIST = reverse("incidents:list")
CREATE = reverse("incidents:create")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The named users are created per test; the real hasher's cost adds minutes.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def url(name: str, incident: Incident | str) -> str:
    reference = incident if isinstance(incident, str) else incident.reference
    return reverse(f"incidents:{name}", kwargs={"reference": reference})


def text(response) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def open_incident(user, **fields) -> Incident:
    defaults = {"title": "Order confirmation sent twice", "summary": "Duplicate send."}
    return services.incident_open(by=Actor.for_user(user), **{**defaults, **fields})


def local(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%dT%H:%M")


def form_data(incident: Incident, **overrides) -> dict:
    """What the edit form posts back when the user touches nothing."""
    data = {
        "title": incident.title,
        "summary": incident.summary,
        "original_template": incident.original_template,
        "original_subject": incident.original_subject,
        "sent_from": local(incident.sent_from) if incident.sent_from else "",
        "sent_until": local(incident.sent_until) if incident.sent_until else "",
        "esp": incident.esp,
        "severity": incident.severity,
        "owner": incident.owner_id,
        "became_aware_at": local(incident.became_aware_at) if incident.became_aware_at else "",
    }
    if incident.personal_data_exposed:
        data["personal_data_exposed"] = "on"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


# --- Logging in --------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_the_login_page(client, incident):
    response = client.get(url("detail", incident))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_staff_member_logs_in_and_lands_on_the_incident_list(client, support_sam):
    page = client.get(reverse("login"))
    assert "Log in to Amends" in text(page)

    response = client.post(
        reverse("login"), {"username": "support_sam", "password": PASSWORD}, follow=True
    )

    assert response.redirect_chain[-1][0] == LIST
    assert "support_sam" in text(response)
    assert "Support" in text(response)


def test_five_failed_logins_lock_out_without_revealing_whether_the_username_exists(
    client, support_sam
):
    def fail_six_times(username, ip):
        for _ in range(6):
            response = client.post(
                reverse("login"), {"username": username, "password": "wrong"}, REMOTE_ADDR=ip
            )
        return response

    known = fail_six_times("support_sam", "10.0.0.1")
    unknown = fail_six_times("nobody_by_this_name", "10.0.0.2")

    assert known.status_code == unknown.status_code == 429
    assert "Too many failed attempts. Try again in 15 minutes." in text(known)
    assert known.content == unknown.content
    assert b"support_sam" not in known.content


def test_behind_a_proxy_one_clients_failed_logins_do_not_lock_out_the_next(
    client, support_sam, settings
):
    settings.AXES_IPWARE_PROXY_COUNT = 1

    def log_in(username, password, client_ip):
        return client.post(
            reverse("login"),
            {"username": username, "password": password},
            REMOTE_ADDR="10.9.9.9",  # the proxy
            HTTP_X_FORWARDED_FOR=f"203.0.113.7, {client_ip}",  # the left part is made up
        )

    for name in ("alice", "bob", "carol", "dave", "erin", "frank"):
        sprayed = log_in(name, "wrong", "198.51.100.66")
    colleague = log_in("support_sam", PASSWORD, "198.51.100.200")

    assert sprayed.status_code == 429  # the client spraying names is locked out…
    assert colleague.status_code == 302  # …not a colleague behind the same proxy
    # A header that names no address is a failed login like any other, not an error.
    client.logout()
    assert log_in("support_sam", "wrong", "not-an-address").status_code == 200


def test_behind_a_proxy_the_audit_trail_names_the_client_not_the_proxy(
    login, support_sam, settings
):
    settings.AXES_IPWARE_PROXY_COUNT = 1

    login(support_sam).post(
        CREATE,
        {"title": "Wrong email", "summary": "Sent.", "severity": "SEV3", "owner": support_sam.pk},
        REMOTE_ADDR="10.9.9.9",
        HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.23",
    )

    assert AuditEntry.objects.get(action="incident.opened").ip == "198.51.100.23"


# --- The list -------------------------------------------------------------------


def test_list_shows_each_incidents_reference_title_severity_status_and_owner(
    login, support_sam, incident
):
    response = login(support_sam).get(LIST)

    page = text(response)
    assert incident.reference in page
    assert "Baby registry gift notice sent to the wrong customers" in page
    assert "SEV2 – major" in page
    assert "Open" in page
    assert "support_sam" in page
    assert f'href="{url("detail", incident)}"' in response.content.decode()


def test_empty_list_says_what_to_do_next(login, support_sam):
    response = login(support_sam).get(LIST)

    assert "No incidents. Open one when an email went out that never should have." in text(response)
    assert f'href="{CREATE}"' in response.content.decode()


def test_list_filters_by_status_and_search(login, support_sam, incident):
    moving = open_incident(support_sam, title="Registry reminder to wrong list")
    services.incident_transition(
        incident=moving, to_status="investigating", by=Actor.for_user(support_sam)
    )
    other = open_incident(support_sam, title="Password reset mail delayed")
    client = login(support_sam)

    by_status = text(client.get(LIST, {"status": "investigating"}))
    assert moving.reference in by_status
    assert incident.reference not in by_status
    assert other.reference not in by_status

    by_search = text(client.get(LIST, {"q": "registry"}))
    assert incident.reference in by_search
    assert moving.reference in by_search
    assert other.reference not in by_search

    both = text(client.get(LIST, {"q": "registry", "status": "open"}))
    assert incident.reference in both
    assert moving.reference not in both


def test_list_filters_by_severity_and_owner(login, support_sam, comms_cleo, incident):
    cleos = open_incident(support_sam, title="Cleo's one", severity="SEV1", owner=comms_cleo)
    client = login(support_sam)

    by_severity = text(client.get(LIST, {"severity": "SEV1"}))
    assert cleos.reference in by_severity
    assert incident.reference not in by_severity

    by_owner = text(client.get(LIST, {"owner": comms_cleo.pk}))
    assert cleos.reference in by_owner
    assert incident.reference not in by_owner


def test_list_filters_that_match_nothing_offer_to_clear_them(login, support_sam, incident):
    response = login(support_sam).get(LIST, {"q": "no such words anywhere"})

    assert "No incidents match these filters." in text(response)
    assert "Clear filters" in text(response)


def test_list_shows_25_per_page_and_the_next_page_keeps_the_filters(login, support_sam):
    for n in range(26):
        open_incident(support_sam, title=f"Registry blast {n}")
    open_incident(support_sam, title="Unrelated")
    client = login(support_sam)

    first = client.get(LIST, {"q": "registry"})
    html = first.content.decode()
    assert html.count("<tr>") == 1 + 25  # header row plus a full page
    assert "Page 1 of 2" in text(first)
    assert 'href="?q=registry&amp;page=2"' in html

    second = client.get(LIST, {"q": "registry", "page": 2})
    assert second.content.decode().count("<tr>") == 1 + 1
    assert "Unrelated" not in text(second)


def test_list_costs_the_same_queries_for_one_incident_or_many(login, support_sam, comms_cleo):
    client = login(support_sam)
    open_incident(support_sam)
    client.get(LIST)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as one:
        client.get(LIST)
    for n in range(10):
        open_incident(support_sam, title=f"More {n}", owner=comms_cleo if n % 2 else support_sam)
    with CaptureQueriesContext(connection) as many:
        client.get(LIST)

    assert len(many) == len(one)


# --- Opening an incident ---------------------------------------------------------


def test_support_can_open_an_incident_and_lands_on_its_page(login, support_sam):
    client = login(support_sam)
    form = client.get(CREATE)
    assert 'type="datetime-local"' in form.content.decode()

    response = client.post(
        CREATE,
        {
            "title": "Registry gift notice to wrong customers",
            "summary": "Sent to 4,000 customers without a registry.",
            "original_template": "registry-gift-purchased",
            "original_subject": "Someone just bought a gift from your baby registry!",
            "sent_from": "2026-03-02T09:00",
            "sent_until": "2026-03-02T09:40",
            "esp": "Postmark",
            "severity": "SEV2",
            "owner": support_sam.pk,
        },
        follow=True,
    )

    incident = Incident.objects.get()
    assert response.redirect_chain[-1][0] == url("detail", incident)
    assert f"Opened {incident.reference}." in messages_of(response)
    page = text(response)
    assert "Registry gift notice to wrong customers" in page
    assert "Someone just bought a gift from your baby registry!" in page
    assert "2 Mar 2026, 09:00 UTC to 2 Mar 2026, 09:40 UTC" in page
    assert incident.created_by == support_sam
    assert AuditEntry.objects.filter(action="incident.opened", actor=support_sam).count() == 1


def test_create_form_rejects_exposure_without_awareness_time(login, support_sam):
    response = login(support_sam).post(
        CREATE,
        {
            "title": "Registry notice",
            "summary": "Names of gift buyers were visible.",
            "severity": "SEV1",
            "owner": support_sam.pk,
            "personal_data_exposed": "on",
            "became_aware_at": "",
        },
    )

    assert response.status_code == 200
    assert "say when you became aware of it" in text(response)
    assert 'value="Registry notice"' in response.content.decode()  # input kept
    assert not Incident.objects.exists()
    assert not AuditEntry.objects.filter(action="incident.opened").exists()


def test_create_form_rejects_a_sending_window_that_ends_before_it_starts(login, support_sam):
    response = login(support_sam).post(
        CREATE,
        {
            "title": "Backwards window",
            "summary": "x",
            "severity": "SEV3",
            "owner": support_sam.pk,
            "sent_from": "2026-03-02T10:00",
            "sent_until": "2026-03-02T09:00",
        },
    )

    assert "The sending window must end after it starts." in text(response)
    assert not Incident.objects.exists()


def test_create_form_offers_only_active_users_as_owner(login, support_sam, comms_cleo):
    comms_cleo.is_active = False
    comms_cleo.save(update_fields=["is_active"])
    client = login(support_sam)

    form = client.get(CREATE)
    assert "support_sam" in text(form)
    assert "comms_cleo" not in text(form)

    response = client.post(
        CREATE, {"title": "t", "summary": "s", "severity": "SEV3", "owner": comms_cleo.pk}
    )
    assert "Select a valid choice" in text(response)
    assert not Incident.objects.exists()


def test_comms_cannot_open_an_incident_and_is_not_offered_the_button(login, comms_cleo):
    client = login(comms_cleo)

    assert "Open incident" not in text(client.get(LIST))
    assert client.get(CREATE).status_code == 403
    assert client.post(CREATE, {"title": "t", "summary": "s"}).status_code == 403
    assert not Incident.objects.exists()


# --- The incident page --------------------------------------------------------------


def test_detail_shows_the_mis_sent_message_and_the_timeline_newest_last(
    login, support_sam, incident
):
    sam = Actor.for_user(support_sam)
    services.incident_add_note(incident=incident, body="First look: 4,000 sent.", by=sam)
    services.incident_add_note(incident=incident, body="ESP logs requested.", by=sam)

    response = login(support_sam).get(url("detail", incident))

    page = text(response)
    assert "registry-gift-purchased" in page
    assert "Someone just bought a gift from your baby registry!" in page
    assert "No personal data exposure recorded" in page
    opened = page.index("Incident opened by support_sam.")
    first = page.index("First look: 4,000 sent.")
    second = page.index("ESP logs requested.")
    assert opened < first < second


def test_unknown_reference_is_not_found(login, support_sam):
    response = login(support_sam).get(url("detail", "INC-2026-9999"))

    assert response.status_code == 404
    assert "Not found" in text(response)


def test_auditor_sees_incidents_but_no_action_buttons(login, auditor_abe, incident):
    client = login(auditor_abe)

    listing = client.get(LIST)
    assert incident.reference in text(listing)
    assert "Open incident" not in text(listing)

    detail = client.get(url("detail", incident))
    html = detail.content.decode()
    assert detail.status_code == 200
    assert incident.title in text(detail)
    assert "Edit details" not in html
    assert url("transition", incident) not in html
    assert url("add-note", incident) not in html
    assert "Move to Investigating" not in html


def test_support_sees_the_status_buttons_the_incident_allows(login, support_sam, incident):
    html = login(support_sam).get(url("detail", incident)).content.decode()

    assert 'value="investigating"' in html
    assert "Move to Investigating" in html
    assert 'value="resolved"' not in html
    assert "Edit details" in html


def test_exposed_incident_shows_the_regulator_deadline_warning(login, support_sam):
    aware = timezone.now() - timedelta(hours=60)
    incident = open_incident(support_sam, personal_data_exposed=True, became_aware_at=aware)

    response = login(support_sam).get(url("detail", incident))

    page = text(response)
    assert "Regulator deadline soon" in page
    assert "Notify the regulator by" in page
    assert "11 hours 59 minutes left" in page or "12 hours left" in page
    deadline = timezone.localtime(aware + timedelta(hours=72)).strftime("%-d %b %Y, %H:%M")
    assert deadline in page
    assert 'role="alert"' in response.content.decode()


def test_overdue_regulator_deadline_shows_an_overdue_banner(login, support_sam):
    aware = timezone.now() - timedelta(hours=80)
    incident = open_incident(support_sam, personal_data_exposed=True, became_aware_at=aware)

    page = text(login(support_sam).get(url("detail", incident)))

    assert "Regulator deadline passed" in page
    assert "overdue by 8 hours" in page or "overdue by 7 hours 59 minutes" in page


def test_recent_exposure_shows_the_deadline_without_a_banner(login, support_sam):
    aware = timezone.now() - timedelta(hours=1)
    incident = open_incident(support_sam, personal_data_exposed=True, became_aware_at=aware)

    response = login(support_sam).get(url("detail", incident))

    page = text(response)
    assert "Notify regulator by" in page
    assert "2 days 23 hours left" in page or "2 days 22 hours left" in page
    assert "Regulator deadline" not in page
    assert 'role="alert"' not in response.content.decode()


# --- Notes ----------------------------------------------------------------------------


def test_comms_adds_a_note_and_sees_it_on_the_timeline(login, comms_cleo, incident):
    response = login(comms_cleo).post(
        url("add-note", incident), {"body": "Drafting the apology now."}, follow=True
    )

    assert response.redirect_chain[-1][0] == url("detail", incident) + "#timeline"
    assert "Note added." in messages_of(response)
    assert "Drafting the apology now." in text(response)
    note = TimelineEntry.objects.get(incident=incident, kind="note")
    assert note.author == comms_cleo
    assert AuditEntry.objects.filter(action="incident.note_added", actor=comms_cleo).exists()


def test_empty_note_shows_an_error_and_adds_nothing(login, support_sam, incident):
    response = login(support_sam).post(url("add-note", incident), {"body": "   "}, follow=True)

    assert "A note cannot be empty." in messages_of(response)
    assert not TimelineEntry.objects.filter(kind="note").exists()


def test_auditor_cannot_add_a_note(login, auditor_abe, incident):
    response = login(auditor_abe).post(url("add-note", incident), {"body": "Hello"})

    assert response.status_code == 403
    assert not TimelineEntry.objects.filter(kind="note").exists()


# --- Status changes --------------------------------------------------------------------


def test_comms_moves_an_incident_forward_with_a_note(login, comms_cleo, incident):
    response = login(comms_cleo).post(
        url("transition", incident),
        {"to_status": "investigating", "note": "Pulling the send log."},
        follow=True,
    )

    incident.refresh_from_db()
    assert incident.status == "investigating"
    assert f"{incident.reference} is now Investigating." in messages_of(response)
    assert "Status changed from Open to Investigating. Pulling the send log." in text(response)


def test_illegal_transition_shows_a_clear_error_and_changes_nothing(login, support_sam, incident):
    before = AuditEntry.objects.count()

    response = login(support_sam).post(
        url("transition", incident), {"to_status": "monitoring"}, follow=True
    )

    assert response.redirect_chain[-1][0] == url("detail", incident)
    assert messages_of(response) == [
        "An incident cannot go from Open to Monitoring. From here it can go to: Investigating."
    ]
    incident.refresh_from_db()
    assert incident.status == "open"
    assert not TimelineEntry.objects.filter(kind="status").exists()
    assert AuditEntry.objects.count() == before


def test_double_submitted_transition_shows_a_clear_error_not_a_500(login, support_sam, incident):
    client = login(support_sam)
    first = client.post(url("transition", incident), {"to_status": "investigating"}, follow=True)
    assert f"{incident.reference} is now Investigating." in messages_of(first)

    again = client.post(url("transition", incident), {"to_status": "investigating"}, follow=True)

    assert again.status_code == 200
    [message] = messages_of(again)
    assert message.startswith("This incident is already Investigating.")
    assert TimelineEntry.objects.filter(kind="status").count() == 1


def test_two_people_clicking_the_same_transition_at_once_get_one_change_and_one_error(
    transactional_audit, support_sam, comms_cleo, incident
):
    barrier = threading.Barrier(2)
    outcomes = {}

    def click(user):
        client = Client()
        client.force_login(user)
        barrier.wait()
        try:
            response = client.post(url("transition", incident), {"to_status": "investigating"})
            outcomes[user.username] = (
                response.status_code,
                [str(m) for m in get_messages(response.wsgi_request)],
            )
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=click, args=(u,)) for u in (support_sam, comms_cleo)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [status for status, _ in outcomes.values()] == [302, 302]
    messages = sorted(message for _, ms in outcomes.values() for message in ms)
    assert messages == [
        f"{incident.reference} is now Investigating.",
        "This incident is already Investigating.",
    ]
    assert TimelineEntry.objects.filter(incident=incident, kind="status").count() == 1


def test_unknown_status_is_refused_with_a_message(login, support_sam, incident):
    response = login(support_sam).post(
        url("transition", incident), {"to_status": "closed"}, follow=True
    )

    assert "Select a valid choice" in messages_of(response)[0]
    incident.refresh_from_db()
    assert incident.status == "open"


def _to_monitoring(incident, user) -> None:
    for status in ("investigating", "contacting", "monitoring"):
        services.incident_transition(incident=incident, to_status=status, by=Actor.for_user(user))


def test_resolving_asks_for_confirmation_first(login, support_sam, incident):
    _to_monitoring(incident, support_sam)
    client = login(support_sam)
    assert "Resolve…" in text(client.get(url("detail", incident)))

    response = client.post(
        url("transition", incident), {"to_status": "resolved", "note": "All contacted."}
    )

    assert response.status_code == 200
    assert "Resolve this incident?" in text(response)
    assert "I confirm every affected customer has been contacted" in text(response)
    assert "All contacted." in text(response)  # the note is carried over
    incident.refresh_from_db()
    assert incident.status == "monitoring"


def test_confirming_resolves_the_incident(login, support_sam, incident):
    _to_monitoring(incident, support_sam)

    response = login(support_sam).post(
        url("transition", incident),
        {"to_status": "resolved", "note": "All contacted.", "step": "confirm", "confirm": "on"},
        follow=True,
    )

    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert incident.resolved_at is not None
    assert f"{incident.reference} is now Resolved." in messages_of(response)
    assert "Reopen as Investigating" in text(response)


def test_resolving_without_ticking_the_box_changes_nothing(login, support_sam, incident):
    _to_monitoring(incident, support_sam)

    response = login(support_sam).post(
        url("transition", incident), {"to_status": "resolved", "step": "confirm"}
    )

    assert "Tick the box to confirm before resolving." in text(response)
    incident.refresh_from_db()
    assert incident.status == "monitoring"


def test_auditor_cannot_change_the_status(login, auditor_abe, incident):
    response = login(auditor_abe).post(url("transition", incident), {"to_status": "investigating"})

    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.status == "open"


# --- Editing ----------------------------------------------------------------------------


def test_support_edits_an_incident_and_the_change_is_on_the_timeline(login, support_sam, incident):
    client = login(support_sam)
    form = client.get(url("edit", incident))
    assert 'value="Baby registry gift notice sent to the wrong customers"' in form.content.decode()

    response = client.post(
        url("edit", incident), form_data(incident, severity="SEV1", esp="Postmark"), follow=True
    )

    assert "Changes saved." in messages_of(response)
    incident.refresh_from_db()
    assert incident.severity == "SEV1"
    assert incident.esp == "Postmark"
    assert "support_sam changed esp, severity." in text(response)
    entry = AuditEntry.objects.get(action="incident.updated")
    assert entry.before == {"esp": "", "severity": "SEV2"}


def test_editing_one_field_leaves_an_untouched_awareness_time_exactly_as_it_was(login, support_sam):
    aware = timezone.now().replace(second=37, microsecond=123456) - timedelta(hours=2)
    incident = open_incident(support_sam, personal_data_exposed=True, became_aware_at=aware)

    login(support_sam).post(url("edit", incident), form_data(incident, title="Sharper title"))

    incident.refresh_from_db()
    assert incident.title == "Sharper title"
    assert incident.became_aware_at == aware
    assert AuditEntry.objects.get(action="incident.updated").after == {"title": "Sharper title"}


def test_saving_the_edit_form_unchanged_records_nothing(login, support_sam, incident):
    response = login(support_sam).post(url("edit", incident), form_data(incident), follow=True)

    assert "Nothing changed." in messages_of(response)
    assert not AuditEntry.objects.filter(action="incident.updated").exists()


def test_edit_rejects_marking_exposure_without_an_awareness_time(login, support_sam, incident):
    response = login(support_sam).post(
        url("edit", incident), form_data(incident, personal_data_exposed="on")
    )

    assert response.status_code == 200
    assert "say when you became aware of it" in text(response)
    incident.refresh_from_db()
    assert incident.personal_data_exposed is False


def test_comms_cannot_edit_an_incident(login, comms_cleo, incident):
    client = login(comms_cleo)

    assert "Edit details" not in text(client.get(url("detail", incident)))
    assert client.get(url("edit", incident)).status_code == 403
    response = client.post(url("edit", incident), form_data(incident, title="Hijacked"))
    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.title != "Hijacked"


# --- Access, for every page -------------------------------------------------------------

# (url name, method, takes a reference, the permission it needs)
PAGES = [
    ("list", "get", False, "view_incident"),
    ("create", "get", False, "add_incident"),
    ("create", "post", False, "add_incident"),
    ("detail", "get", True, "view_incident"),
    ("edit", "get", True, "change_incident"),
    ("edit", "post", True, "change_incident"),
    ("transition", "post", True, "transition_incident"),
    ("add-note", "post", True, "add_note"),
]
ROLE_USERS = ["support_sam", "comms_cleo", "auditor_abe", "admin_ada"]


@pytest.mark.parametrize("role_user", ROLE_USERS)
@pytest.mark.parametrize(("name", "method", "has_ref", "perm"), PAGES)
def test_each_page_is_forbidden_without_its_permission_and_missing_with_it(
    request, login, incident, role_user, name, method, has_ref, perm
):
    user = request.getfixturevalue(role_user)
    client = login(user)
    allowed = user.has_perm(f"incidents.{perm}")

    target = url(name, "INC-1999-0001") if has_ref else reverse(f"incidents:{name}")
    response = getattr(client, method)(target)

    if not allowed:
        assert response.status_code == 403
    elif has_ref:
        assert response.status_code == 404
    else:
        assert response.status_code in (200, 302)


@pytest.mark.parametrize("name", ["transition", "add-note"])
def test_state_changing_endpoints_refuse_get(login, support_sam, incident, name):
    assert login(support_sam).get(url(name, incident)).status_code == 405


# --- Layout ---------------------------------------------------------------------------------


def test_header_shows_role_logout_form_and_admin_link_only_for_staff(
    login, client, support_sam, admin_ada
):
    html = login(support_sam).get(LIST).content.decode()
    assert "support_sam" in html
    assert '<span class="role-tag">Support</span>' in html
    assert 'href="/api/docs/"' in html
    assert reverse("admin:index") not in html
    assert re.search(r'<form method="post" action="/logout/"', html)

    client.logout()
    html = login(admin_ada).get(LIST).content.decode()
    assert f'href="{reverse("admin:index")}"' in html


def test_every_page_renders_without_inline_styles_or_scripts(login, client, support_sam, incident):
    aware = timezone.now() - timedelta(hours=60)
    exposed = open_incident(support_sam, personal_data_exposed=True, became_aware_at=aware)
    _to_monitoring(exposed, support_sam)
    services.incident_add_note(incident=incident, body="A note.", by=Actor.for_user(support_sam))

    pages = [client.get(reverse("login"))]
    for _ in range(5):
        locked = client.post(reverse("login"), {"username": "x", "password": "y"})
    pages.append(locked)

    client = login(support_sam)
    pages += [
        client.get(LIST),
        client.get(LIST, {"q": "nothing matches this"}),
        client.get(CREATE),
        client.post(CREATE, {"title": "", "personal_data_exposed": "on"}),
        client.get(url("detail", incident)),
        client.get(url("detail", exposed)),
        client.get(url("edit", incident)),
        client.post(url("transition", exposed), {"to_status": "resolved"}),
        client.get(url("detail", "INC-1999-0001")),
    ]
    client.logout()
    pages.append(login(User.objects.create_user("nobody")).get(LIST))  # 403, no role

    assert [p.status_code for p in pages] == [
        200,
        429,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        404,
        403,
    ]
    for page in pages:
        html = page.content.decode()
        assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE), page.request["PATH_INFO"]
        assert "<style" not in html
        assert "<script" not in html
        assert "{#" not in html and "{%" not in html, "template syntax leaked into the page"
        assert "/static/css/amends.css" in html
