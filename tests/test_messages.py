"""Drafting, previewing, test-sending and approving the apology (issue 4)."""

import json
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from campaigns import rendering, selectors, services
from campaigns.models import Approval, Immutable, Message, MessageVersion, OutboxMessage, TestSend
from incidents import services as incident_services
from incidents.actors import Actor
from incidents.models import AuditEntry
from incidents.roles import COMMS, SUPPORT
from incidents.services.audience import default_segment
from tests.conftest import _make
from tests.factories import freeze_people

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

EN = {
    "subject": "We sent you an email by mistake",
    "text": (
        "Dear {{ first_name|default('customer') }},\n\n"
        "on {{ original_send_date }} we sent you an email about a baby registry. "
        "It was not meant for you, and we are sorry.\n\n"
        "{{ company_name }}"
    ),
    "html": (
        "<p>Dear {{ first_name|default('customer') }},</p>"
        "<p>on {{ original_send_date }} we sent you an email about a baby registry. "
        "It was not meant for you, and we are sorry.</p>"
        '<p><a href="https://help.example/{{ incident_reference }}">What happened</a></p>'
    ),
}
DE = {
    "subject": "Wir haben Ihnen versehentlich eine E-Mail geschickt",
    "text": (
        "Liebe/r {{ first_name|default('Kundin, lieber Kunde') }},\n\n"
        "am {{ original_send_date }} haben wir Ihnen eine E-Mail zu einer Babyliste geschickt. "
        "Sie war nicht für Sie bestimmt. Das tut uns leid.\n\n{{ company_name }}"
    ),
    "html": "",
}


@pytest.fixture(autouse=True)
def _in_process_jobs(settings):
    settings.REDIS_URL = ""  # notifications run after the commit, in this process


@pytest.fixture
def comms_cole(db):
    return _make("comms_cole", COMMS)


@pytest.fixture
def support_sue(db):
    return _make("support_sue", SUPPORT)


@pytest.fixture
def segment(incident):
    return default_segment(incident)


@pytest.fixture
def people(incident, support_sam, segment):
    """Three people found the real way: a send log, then a frozen audience."""
    rows = [
        ("m1", "ann@example.com", "en", {"first_name": "Ann"}),
        ("m2", "bernd@example.de", "de-at", {"first_name": "Bernd"}),
        ("m3", "eve@example.com", "fr", {"first_name": "<b>Eve</b><script>alert(1)</script>"}),
    ]
    return freeze_people(incident, support_sam, rows)


def save(user, *, segment=None, message=None, content=None, **fields):
    values = {
        "sender_name": "Amends Care",
        "sender_address": "care@retailer.example",
        "reply_to": "help@retailer.example",
        "fallback_locale": "en",
        "content": content if content is not None else {"en": dict(EN), "de": dict(DE)},
    } | fields
    if message is None and segment is None:
        raise TypeError("segment or message")
    return services.version_create(
        by=Actor.for_user(user), segment=segment, message=message, **values
    )


def approve(version, user, **kwargs):
    return services.version_approve(version=version, by=Actor.for_user(user), **kwargs)


def actions():
    return list(AuditEntry.objects.order_by("seq").values_list("action", flat=True))


# --- Versions ---------------------------------------------------------------------------


def test_the_first_save_creates_the_message_and_version_one(segment, support_sam):
    version = save(support_sam, segment=segment)
    assert (version.number, version.author, version.parent_hash) == (1, support_sam, "")
    assert version.content_hash == version.compute_hash() and len(version.content_hash) == 64
    assert version.locales == ["de", "en"]
    message = Message.objects.get(segment=segment)
    assert (message.version_count, message.sender_address) == (1, "care@retailer.example")
    assert actions()[-2:] == ["message.created", "message.version_created"]
    entry = AuditEntry.objects.get(action="message.version_created")
    assert entry.after["content_hash"] == version.content_hash and entry.actor == support_sam


def test_every_save_is_a_new_version_and_saved_versions_never_change(segment, support_sam):
    first = save(support_sam, segment=segment)
    content = {"en": EN | {"subject": "We are sorry"}, "de": DE}
    second = save(support_sam, message=first.message, content=content, based_on=1)
    assert second.number == 2 and second.parent_hash == first.content_hash
    first.refresh_from_db()
    assert first.content["en"]["subject"] == EN["subject"]
    first.content["en"]["subject"] = "changed in place"
    with pytest.raises(Immutable):
        first.save()
    with pytest.raises(Immutable):
        MessageVersion.objects.filter(pk=first.pk).update(content={})
    with pytest.raises(Immutable):
        first.delete()
    assert AuditEntry.objects.filter(action="message.version_created").last().after["changed"] == [
        "en.subject"
    ]


def test_a_segment_has_one_message(segment, support_sam):
    first = save(support_sam, segment=segment)
    second = save(support_sam, segment=segment, sender_name="Care team")
    assert first.message_id == second.message_id and Message.objects.count() == 1


def test_a_save_that_changes_nothing_is_refused(segment, support_sam):
    version = save(support_sam, segment=segment)
    with pytest.raises(ValidationError, match="Nothing changed since version 1"):
        save(support_sam, message=version.message)


def test_a_save_based_on_an_old_version_is_refused(segment, support_sam, support_sue):
    version = save(support_sam, segment=segment)
    save(support_sue, message=version.message, sender_name="Care", based_on=1)
    with pytest.raises(ValidationError, match="Someone saved version 2 while you were editing"):
        save(support_sam, message=version.message, sender_name="Team", based_on=1)


def test_two_versions_compare_as_a_diff(segment, support_sam):
    first = save(support_sam, segment=segment)
    text = EN["text"].replace("and we are sorry", "and we are truly sorry")
    second = save(
        support_sam,
        message=first.message,
        content={"en": EN | {"text": text}},
        reply_to="",
    )
    diffs = {(d.locale, d.field): d.lines for d in selectors.version_diff(first, second)}
    assert set(diffs) == {("", "reply_to"), ("en", "text"), ("de", "subject"), ("de", "text")}
    changed = [line for line in diffs[("en", "text")] if line[:1] in "+-"]
    assert changed[2].startswith("-on {{ original_send_date }}")
    assert changed[2].endswith("and we are sorry.")
    assert changed[3].endswith("and we are truly sorry.")
    assert diffs[("en", "text")][0] == "--- version 1: en text"


def test_a_drafting_role_is_needed_to_save(segment, comms_cleo):
    with pytest.raises(PermissionDenied):
        save(comms_cleo, segment=segment)
    assert not MessageVersion.objects.exists()


# --- Checks at save time ------------------------------------------------------------------


def test_an_unknown_placeholder_is_refused_at_save_with_the_line_and_the_reason(
    segment, support_sam
):
    text = "Dear {{ first_name }},\n\nsorry.\n{{ settings.SECRET_KEY }}\n{{ shoe_size }}"
    with pytest.raises(ValidationError) as caught:
        save(support_sam, segment=segment, content={"en": EN | {"text": text}})
    errors = caught.value.message_dict["content.en.text"]
    assert errors[0].startswith("Line 4: “.” reaches inside a value")
    assert errors[1].startswith("Line 4: “settings” is not a placeholder you can use.")
    assert errors[2] == (
        "Line 5: “shoe_size” is not a placeholder you can use. Available: first_name, "
        "customer_id, incident_reference, original_send_date, verification_code, company_name, "
        "verification_url."
    )
    assert not MessageVersion.objects.exists()


def test_a_missing_fallback_variant_and_bad_addresses_are_refused(segment, support_sam):
    with pytest.raises(ValidationError) as caught:
        save(
            support_sam,
            segment=segment,
            content={"de": DE},
            sender_address="not an address",
            reply_to="nor@this",
        )
    errors = caught.value.message_dict
    assert "no variant" in errors["fallback_locale"][0]
    assert set(errors) == {"fallback_locale", "sender_address", "reply_to"}


def test_a_subject_is_one_line(segment, support_sam):
    with pytest.raises(ValidationError, match="A subject is one line"):
        save(support_sam, segment=segment, content={"en": EN | {"subject": "Sorry\nBcc: x@y"}})


def test_unsafe_html_is_removed_before_the_version_is_saved(segment, support_sam):
    html = '<p onclick="steal()">Sorry</p><script>alert(1)</script><a href="javascript:x()">x</a>'
    version = save(support_sam, segment=segment, content={"en": EN | {"html": html}})
    assert version.content["en"]["html"] == '<p>Sorry</p><a rel="noopener noreferrer">x</a>'


# --- Rendering and preview -----------------------------------------------------------------


def test_a_customer_name_with_html_is_escaped_in_html_and_left_as_text_in_plain(
    segment, support_sam, people
):
    version = save(support_sam, segment=segment)
    eve = people["eve@example.com"]
    rendered = rendering.render_version(version=version, person=eve)
    assert "&lt;b&gt;Eve&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "<script" not in rendered.html and "<b>" not in rendered.html
    assert rendered.text.startswith("Dear <b>Eve</b><script>alert(1)</script>,")


def test_the_preview_uses_the_persons_locale_or_else_the_fallback(segment, support_sam, people):
    version = save(support_sam, segment=segment)
    bernd = rendering.render_version(version=version, person=people["bernd@example.de"])
    assert (bernd.locale, bernd.fell_back) == ("de", False)  # de-at → de
    assert bernd.text.startswith("Liebe/r Bernd,\n\nam 28. November 2026 haben wir")
    assert bernd.text_derived is False and bernd.html == ""
    eve = rendering.render_version(version=version, person=people["eve@example.com"])
    assert (eve.locale, eve.fell_back) == ("en", True)
    ann = rendering.render_version(version=version, person=people["ann@example.com"])
    assert ann.from_email == "Amends Care <care@retailer.example>"
    assert ann.reply_to == "help@retailer.example"
    assert "on Nov. 28, 2026 we sent you" in ann.text


def test_a_sample_preview_uses_made_up_values(segment, support_sam, incident):
    version = save(support_sam, segment=segment)
    rendered = rendering.render_version(version=version, locale="de")
    assert rendered.text.startswith("Liebe/r Alex,")
    assert rendered.subject == DE["subject"]
    html = rendering.render_version(version=version).html
    assert f'href="https://help.example/{incident.reference}"' in html


def test_a_missing_plain_text_is_derived_from_the_html(segment, support_sam):
    version = save(support_sam, segment=segment, content={"en": EN | {"text": ""}})
    rendered = rendering.render_version(version=version)
    incident = version.message.incident
    sent = rendering.sample_context(incident=incident, locale="en")["original_send_date"]
    assert rendered.text_derived
    assert rendered.text == (
        f"Dear Alex,\n\non {sent} we sent you an email about a baby registry. It was not "
        "meant for you, and we are sorry.\n\n"
        f"What happened (https://help.example/{incident.reference})"
    )
    assert "text_missing" in {w["code"] for w in selectors.version_warnings(version=version)}


def test_rendered_output_over_the_size_cap_is_refused(segment, support_sam, settings):
    version = save(support_sam, segment=segment)
    settings.MESSAGE_MAX_RENDERED_BYTES = 300
    with pytest.raises(rendering.RenderError, match="larger than 300 bytes"):
        rendering.render_version(version=version)


def test_a_template_larger_than_the_source_cap_is_refused(segment, support_sam, settings):
    settings.MESSAGE_MAX_TEMPLATE_BYTES = 1000
    with pytest.raises(ValidationError, match="at most 1,000 bytes"):
        save(support_sam, segment=segment, content={"en": EN | {"text": "sorry " * 200}})


# --- Warnings ----------------------------------------------------------------------------------


def test_a_locale_of_the_segment_without_a_variant_is_warned_about(segment, support_sam, people):
    version = save(support_sam, segment=segment)
    warnings = selectors.version_warnings(version=version)
    missing = [w for w in warnings if w["code"] == "locale_missing"]
    assert missing == [
        {
            "code": "locale_missing",
            "locale": "fr",
            "message": "1 person in “Everyone else” has the locale “fr”, which has no variant; "
            "they get the “en” version.",
        }
    ]


def test_a_long_subject_and_a_plain_http_link_are_warned_about(segment, support_sam):
    en = EN | {
        "subject": "We are very sorry: an email about a baby registry reached you by mistake earlier today",
        "html": EN["html"] + '<p><a href="http://old.example/faq">FAQ</a></p>',
    }
    version = save(support_sam, segment=segment, content={"en": en})
    codes = {w["code"]: w["message"] for w in selectors.version_warnings(version=version)}
    assert "subject_too_long" in codes
    assert codes["link_not_https"] == "This link is not https: http://old.example/faq."


def test_when_personal_data_was_exposed_the_art34_parts_are_checked(segment, support_sam, incident):
    incident.personal_data_exposed, incident.became_aware_at = True, T0
    incident.save(update_fields=["personal_data_exposed", "became_aware_at"])
    version = save(support_sam, segment=segment, content={"en": EN})
    codes = {w["code"] for w in selectors.version_warnings(version=version)}
    assert {"gdpr_contact_point_missing", "gdpr_measures_missing"} <= codes
    complete = EN | {
        "text": EN["text"]
        + "\n\nThis means no one else saw your details. We have stopped the registry "
        "emails. Questions? Write to privacy@retailer.example."
    }
    better = save(support_sam, message=version.message, content={"en": complete})
    codes = {w["code"] for w in selectors.version_warnings(version=better)}
    assert not {c for c in codes if c.startswith("gdpr_")}


# --- Approval ---------------------------------------------------------------------------------


def test_the_author_cannot_approve_their_own_version(segment, support_sam, admin_ada):
    version = save(admin_ada, segment=segment)
    with pytest.raises(ValidationError, match="You wrote version 1; someone who did not"):
        approve(version, admin_ada)
    assert not Approval.objects.exists()


def test_an_author_of_an_earlier_version_cannot_approve_a_later_one(
    segment, admin_ada, support_sam, comms_cleo
):
    first = save(admin_ada, segment=segment)
    second = save(support_sam, message=first.message, sender_name="Care")
    with pytest.raises(ValidationError, match="You wrote version 1 of this message"):
        approve(second, admin_ada)
    approve(second, comms_cleo)
    assert services.version_is_approved(second)


def test_support_cannot_approve(segment, support_sam, support_sue):
    version = save(support_sam, segment=segment)
    with pytest.raises(PermissionDenied):
        approve(version, support_sue)


def test_an_approval_binds_the_version_and_is_audited(segment, support_sam, comms_cleo):
    version = save(support_sam, segment=segment)
    assert not services.version_is_approved(version)
    approval = approve(version, comms_cleo, comment="Kind and clear.")
    assert approval.content_hash == version.content_hash
    state = services.version_approval_state(version)
    assert (state.needed, state.have, state.approved, state.is_latest) == (1, 1, True, True)
    entry = AuditEntry.objects.get(action="message.version_approved")
    assert entry.after["content_hash"] == version.content_hash and entry.after["approved"]


def test_approving_twice_is_refused(segment, support_sam, comms_cleo):
    version = save(support_sam, segment=segment)
    approve(version, comms_cleo)
    with pytest.raises(ValidationError, match="You already approved version 1"):
        approve(version, comms_cleo)


def test_an_edit_after_approval_needs_its_own_approval(segment, support_sam, comms_cleo):
    first = save(support_sam, segment=segment)
    approve(first, comms_cleo)
    second = save(support_sam, message=first.message, content={"en": EN | {"subject": "Sorry"}})
    assert services.version_is_approved(first)  # it still says exactly what was approved
    assert not services.version_is_approved(second)
    assert services.version_approval_state(second).have == 0
    with pytest.raises(ValidationError, match="Version 1 is not the latest"):
        approve(first, _make("comms_carl", COMMS))
    approve(second, comms_cleo)
    assert services.version_is_approved(second)


def _tamper(version, content):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # As a superuser could: skip the triggers for this transaction only.
            cursor.execute("SET LOCAL session_replication_role = replica")
            sql = "UPDATE campaigns_messageversion SET content = %s::jsonb WHERE id = %s"
        else:
            sql = "UPDATE campaigns_messageversion SET content = %s WHERE id = %s"
        cursor.execute(sql, [json.dumps(content), version.pk])


def test_the_approval_is_bound_to_the_content_hash(segment, support_sam, comms_cleo):
    version = save(support_sam, segment=segment)
    approve(version, comms_cleo)
    assert services.version_is_approved(version)
    tampered = {"en": EN | {"text": "Click https://evil.example to claim your gift"}, "de": DE}
    _tamper(version, tampered)
    state = services.version_approval_state(version)
    assert not state.content_intact and not state.approved and state.have == 0
    assert not services.version_is_approved(version)
    with pytest.raises(ValidationError, match="changed in the database"):
        approve(version, _make("comms_carl", COMMS))


@pytest.mark.postgres
def test_the_database_refuses_to_change_a_saved_version(segment, support_sam):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL-only behaviour")
    from django.db import InternalError, ProgrammingError

    version = save(support_sam, segment=segment)
    refused = pytest.raises((InternalError, ProgrammingError), match="never changed")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_messageversion SET sender_name = 'x' WHERE id = %s", [version.pk]
        )


def test_sev1_needs_two_approvers(incident, support_sam, comms_cleo, comms_cole):
    incident_services.incident_update(
        incident=incident, by=Actor.for_user(support_sam), severity="SEV1"
    )
    version = save(support_sam, segment=default_segment(incident))
    approve(version, comms_cleo)
    state = services.version_approval_state(version)
    assert (state.needed, state.have, state.approved, state.missing) == (2, 1, False, 1)
    approve(version, comms_cole)
    assert services.version_is_approved(version)


def test_approvals_required_are_configurable_per_severity(incident, settings):
    settings.MESSAGE_APPROVALS_REQUIRED = {"SEV2": 3, "default": 0}
    assert selectors.approvals_required(incident) == 3
    incident.severity = "SEV4"
    assert selectors.approvals_required(incident) == 1  # never fewer than one


def test_a_rejection_needs_a_comment_and_goes_back_to_the_author(
    segment, support_sam, comms_cleo, mailoutbox, django_capture_on_commit_callbacks
):
    version = save(support_sam, segment=segment)
    with pytest.raises(ValidationError, match="Say what needs to change"):
        services.version_reject(version=version, by=Actor.for_user(comms_cleo), comment="  ")
    with django_capture_on_commit_callbacks(execute=True):
        services.version_reject(
            version=version,
            by=Actor.for_user(comms_cleo),
            comment="Please do not mention the registry by name.",
        )
    assert [m.to for m in mailoutbox] == [["support_sam@amends.example"]]
    assert mailoutbox[0].subject.startswith("Changes needed: INC-")
    assert "Please do not mention the registry by name." in mailoutbox[0].body
    assert "Please do not mention the registry by name." in mailoutbox[0].alternatives[0].content
    assert not services.version_is_approved(version)
    with pytest.raises(ValidationError, match="was rejected, so it cannot be approved"):
        approve(version, _make("comms_carl", COMMS))
    assert (
        AuditEntry.objects.get(action="message.version_rejected")
        .after["comment"]
        .startswith("Please")
    )


def test_approvers_are_notified_when_their_approval_is_requested(
    segment,
    support_sam,
    comms_cleo,
    comms_cole,
    admin_ada,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    first = save(support_sam, segment=segment)
    # comms_cole cannot draft; an admin edits, then asks. Authors are never asked.
    second = save(admin_ada, message=first.message, sender_name="Care")
    with django_capture_on_commit_callbacks(execute=True):
        notified = services.approval_request(version=second, by=Actor.for_user(admin_ada))
    assert {u.username for u in notified} == {"comms_cleo", "comms_cole"}
    assert sorted(m.to[0] for m in mailoutbox) == [
        "comms_cleo@amends.example",
        "comms_cole@amends.example",
    ]
    email = mailoutbox[0]
    assert email.subject == f"Approval requested: {first.message.incident.reference}, " + (
        "Everyone else, version 2"
    )
    assert "admin_ada asks you to review" in email.body
    entry = AuditEntry.objects.get(action="message.approval_requested")
    assert entry.after["notified"] == sorted(u.pk for u in notified)


def test_an_approval_request_with_no_one_left_to_ask_is_refused(segment, support_sam):
    version = save(support_sam, segment=segment)
    with pytest.raises(ValidationError, match="No Comms user"):
        services.approval_request(version=version, by=Actor.for_user(support_sam))


# --- Test sends -------------------------------------------------------------------------------


def test_a_test_send_reaches_only_the_seed_list(segment, support_sam, mailoutbox, settings):
    settings.MESSAGE_TEST_SEED_LIST = ["seed@amends.example", "qa@amends.example"]
    version = save(support_sam, segment=segment)
    by = Actor.for_user(support_sam)
    with pytest.raises(ValidationError, match="Not on it: ann@example.com. Nothing was sent."):
        services.version_test_send(
            version=version, addresses=["seed@amends.example", "ann@example.com"], by=by
        )
    assert mailoutbox == [] and not TestSend.objects.exists()

    test_send = services.version_test_send(
        version=version, addresses=[" Seed@Amends.example", "qa@amends.example"], by=by
    )
    assert (test_send.address_count, test_send.message_count) == (2, 4)  # 2 addresses × 2 locales
    assert sorted({m.to[0] for m in mailoutbox}) == ["qa@amends.example", "seed@amends.example"]
    for email in mailoutbox:
        assert len(email.to) == 1 and email.cc == [] and email.bcc == []
        assert email.extra_headers["X-Amends-Test"] == "1"
        assert email.subject.startswith("[TEST] ")
        assert email.from_email == "Amends Care <care@retailer.example>"
    entry = AuditEntry.objects.get(action="message.test_sent")
    assert "seed@amends.example" not in json.dumps(entry.after)
    assert entry.after["emails"] == 4 and len(entry.after["recipients"]) == 2


def test_the_sandbox_backend_keeps_what_it_sent(segment, support_sam, settings):
    settings.MAILERS = {"default": {"BACKEND": "campaigns.mail.SandboxBackend"}}
    version = save(support_sam, segment=segment)
    services.version_test_send(
        version=version, addresses=["seed@amends.example"], by=Actor.for_user(support_sam)
    )
    kept = {m.headers["X-Amends-Locale"]: m for m in OutboxMessage.objects.all()}
    assert set(kept) == {"en", "de"}
    en = kept["en"]
    assert en.to == ["seed@amends.example"] and en.subject == f"[TEST] {EN['subject']}"
    assert en.message_id.startswith("<sandbox-") and en.message_id.endswith("@amends.local>")
    assert "<p>Dear Alex,</p>" in en.html and en.text.startswith("Dear Alex,")
    assert mail.outbox == []


# --- The whole flow ----------------------------------------------------------------------------


def test_everything_is_audited_and_no_address_is_in_the_audit_trail(
    segment, support_sam, comms_cleo, people, django_capture_on_commit_callbacks
):
    version = save(support_sam, segment=segment)
    with django_capture_on_commit_callbacks(execute=True):
        services.approval_request(version=version, by=Actor.for_user(support_sam))
    services.version_test_send(
        version=version, addresses=["seed@amends.example"], by=Actor.for_user(support_sam)
    )
    approve(version, comms_cleo)
    second = save(support_sam, message=version.message, sender_name="Care")
    with django_capture_on_commit_callbacks(execute=True):
        services.version_reject(version=second, by=Actor.for_user(comms_cleo), comment="No.")
    messages_actions = [a for a in actions() if a.startswith("message.")]
    assert messages_actions == [
        "message.created",
        "message.version_created",
        "message.approval_requested",
        "message.test_sent",
        "message.version_approved",
        "message.version_created",
        "message.version_rejected",
    ]
    trail = json.dumps(list(AuditEntry.objects.values("after", "before", "object_repr")))
    for address in [*people, "seed@amends.example"]:
        assert address not in trail
    from incidents.audit import verify_chain

    assert verify_chain().ok


def test_a_test_send_the_mail_server_refuses_is_a_clear_error_and_audited(
    segment, support_sam, settings, monkeypatch
):
    """Whatever the backend raises, the person sees one clear refusal, never a 500."""
    from django.core.mail.backends.locmem import EmailBackend

    from incidents.models import AuditEntry

    version = save(support_sam, segment=segment)

    def refuse(self, messages):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr(EmailBackend, "send_messages", refuse)
    with pytest.raises(ValidationError, match="did not take the test"):
        services.version_test_send(
            version=version,
            addresses=[settings.MESSAGE_TEST_SEED_LIST[0]],
            by=Actor.for_user(support_sam),
        )
    assert AuditEntry.objects.filter(action="message.test_send_failed").exists()
