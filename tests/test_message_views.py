"""The message pages (draft, compare, preview, test, approve), tested as the people using them."""

import html
import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from campaigns import services
from campaigns.models import Approval, MessageVersion, OutboxMessage, TestSend
from campaigns.rendering import render_version
from incidents import demo
from incidents import services as incident_services
from incidents.actors import Actor
from incidents.models import AffectedPerson, AuditEntry, Incident, Segment
from incidents.roles import COMMS
from incidents.services.audience import default_segment
from tests.conftest import _make
from tests.factories import freeze_people

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
EVIL_NAME = "<b>Eve</b><script>alert(1)</script>"

EN = {
    "subject": "We sent you an email by mistake",
    "text": "Dear {{ first_name|default('customer') }},\n\nit was not meant for you. We are sorry.",
    "html": "<p>Dear {{ first_name|default('customer') }},</p><p>It was not meant for you.</p>",
}
DE = {
    "subject": "Wir haben Ihnen versehentlich eine E-Mail geschickt",
    "text": "Liebe/r {{ first_name|default('Kundin, lieber Kunde') }},\n\nDas tut uns leid.",
    "html": "<p>Liebe/r {{ first_name|default('Kundin, lieber Kunde') }},</p>",
}


@pytest.fixture(autouse=True)
def _in_process_jobs(settings):
    settings.REDIS_URL = ""  # approval and rejection emails go out on commit, in this process
    settings.MESSAGE_TEST_SEED_LIST = ["seed@amends.example", "qa@amends.example"]


@pytest.fixture
def comms_cole(db):
    return _make("comms_cole", COMMS)


@pytest.fixture
def segment(incident):
    return default_segment(incident)


@pytest.fixture
def people(incident, support_sam, segment):
    """Four people found the real way: a send log, then a frozen audience."""
    rows = [
        ("m1", "ann@example.com", "en", {"first_name": "Ann"}),
        ("m2", "bernd@example.de", "de", {"first_name": "Bernd"}),
        ("m3", "eve@example.com", "en", {"first_name": EVIL_NAME}),
        ("m4", "zoe@example.fr", "fr", {"first_name": "Zoé"}),
    ]
    return freeze_people(incident, support_sam, rows)


def url(name: str, incident, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"reference": incident.reference, **kwargs})


def vurl(name: str, version: MessageVersion) -> str:
    message = version.message
    return reverse(
        f"campaigns:{name}",
        kwargs={
            "reference": message.incident.reference,
            "segment_id": message.segment_id,
            "number": version.number,
        },
    )


def text(response) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed, entities decoded."""
    page = response.content.decode()
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def form_data(*, based_on=0, locales=("en", "de"), content=None, **fields) -> dict:
    content = content or {"en": EN, "de": DE}
    data = {
        "based_on": based_on,
        "locales": " ".join(locales),
        "sender_name": "Amends Care",
        "sender_address": "care@retailer.example",
        "reply_to": "help@retailer.example",
        "fallback_locale": "en",
        "new_locale": "",
    } | fields
    for locale in locales:
        for part, value in content.get(locale, {}).items():
            data[f"content-{locale}-{part}"] = value
    return data


def save(user, segment, *, content=None, based_on=None, **fields):
    """A version saved through the real service, as the form would."""
    from campaigns.models import Message

    message = Message.objects.filter(segment=segment).first()
    values = {
        "sender_name": "Amends Care",
        "sender_address": "care@retailer.example",
        "reply_to": "help@retailer.example",
        "fallback_locale": "en",
        "content": content or {"en": EN, "de": DE},
    } | fields
    return services.version_create(
        by=Actor.for_user(user),
        message=message,
        segment=None if message else segment,
        based_on=based_on,
        **values,
    )


def iframes(response) -> list[str]:
    return re.findall(r"<iframe\b[^>]*>", response.content.decode())


def srcdoc(response) -> str:
    """The document inside the preview's iframe, as the browser reads the attribute."""
    (tag,) = iframes(response)
    return html.unescape(re.search(r'srcdoc="([^"]*)"', tag).group(1))


# --- The Messages tab ----------------------------------------------------------------------


def test_the_messages_tab_lists_each_segment_with_its_status_and_next_step(
    login, support_sam, incident, people
):
    Segment.objects.create(incident=incident, name="Germany", position=1)
    response = login(support_sam).get(url("messages", incident))

    page = text(response)
    assert 'aria-current="page">Messages</a>' in response.content.decode()
    assert [row["segment"].name for row in response.context["rows"]] == [
        "Germany",
        "Everyone else",
    ]
    assert page.count("No draft") == 2
    assert "Write the apology for this segment." in page
    assert (
        f'href="{url("message-edit", incident, segment_id=people["ann@example.com"].segment_id)}"'
        in (response.content.decode())
    )


def test_comms_is_told_support_writes_the_apology(login, comms_cleo, incident, people):
    response = login(comms_cleo).get(url("messages", incident))

    assert "Waiting for Support to write the apology." in text(response)
    assert "/edit/" not in response.content.decode()


def test_the_overview_says_what_the_apologies_need_next(
    login, support_sam, comms_cleo, incident, segment, people
):
    client = login(support_sam)
    page = text(client.get(incident.get_absolute_url()))
    assert "0 of 1 segment approved" in page
    assert "Next step: “Everyone else”: Write the apology for this segment." in page

    version = save(support_sam, segment)
    services.version_approve(version=version, by=Actor.for_user(comms_cleo))

    page = text(client.get(incident.get_absolute_url()))
    assert "1 of 1 segment approved" in page
    assert "every segment's apology is approved and ready to send" in page


# --- Drafting ---------------------------------------------------------------------------------


def test_support_drafts_english_and_german_and_sees_version_one(
    login, support_sam, incident, segment, people
):
    client = login(support_sam)
    form = client.get(url("message-edit", incident, segment_id=segment.pk))
    assert form.context["form"].locale_list == ["en", "de", "fr"]  # the people's languages
    assert "{{ verification_code }}" in text(form)
    assert "{{ first_name|default('customer') }}" in text(form)

    response = client.post(
        url("message-edit", incident, segment_id=segment.pk), form_data(), follow=True
    )

    version = MessageVersion.objects.get()
    assert response.redirect_chain[-1][0] == vurl("version", version)
    assert messages_of(response) == ["Saved version 1. Preview it, then ask Comms for approval."]
    assert (version.number, version.author, version.locales) == (1, support_sam, ["de", "en"])
    assert version.content["en"]["subject"] == EN["subject"]
    page = text(response)
    assert "Version 1 of the apology for “Everyone else”" in page
    assert "Draft v1 awaiting approval (0 of 1)" in page
    assert version.content_hash in page
    assert "Wir haben Ihnen versehentlich eine E-Mail geschickt" in page


def test_a_hostile_template_shows_the_line_numbered_error_and_saves_nothing(
    login, support_sam, incident, segment
):
    hostile = EN | {"text": "Dear customer,\n\n{{ settings.SECRET_KEY }}"}
    audit_before = AuditEntry.objects.count()

    response = login(support_sam).post(
        url("message-edit", incident, segment_id=segment.pk),
        form_data(content={"en": hostile, "de": DE}),
    )

    assert response.status_code == 200
    errors = response.context["form"].errors["content-en-text"]
    assert errors and all(error.startswith("Line 3: ") for error in errors)
    assert "Line 3: “settings” is not a placeholder you can use." in errors[1]
    page = response.content.decode()
    field = page[page.index('for="id_content-en-text"') : page.index('name="content-en-html"')]
    assert html.escape(errors[1]) in field  # the error sits with the English plain text
    assert "Please correct the fields marked below." in text(response)
    assert "{{ settings.SECRET_KEY }}" in html.unescape(page)  # what was typed is kept
    assert not MessageVersion.objects.exists()
    assert AuditEntry.objects.count() == audit_before


def test_an_unchanged_save_says_so_and_saves_nothing(login, support_sam, incident, segment):
    version = save(support_sam, segment)

    response = login(support_sam).post(
        url("message-edit", incident, segment_id=segment.pk), form_data(based_on=1), follow=True
    )

    assert messages_of(response) == ["Version 1 already holds exactly this; nothing new was saved."]
    assert response.redirect_chain[-1][0] == vurl("version", version)
    assert MessageVersion.objects.count() == 1


def test_a_save_over_someone_elses_newer_version_is_refused_clearly(
    login, support_sam, admin_ada, incident, segment
):
    save(support_sam, segment)
    client = login(support_sam)
    form = client.get(url("message-edit", incident, segment_id=segment.pk))
    assert form.context["form"]["based_on"].value() == 1
    save(admin_ada, segment, sender_name="Retailer Care", based_on=1)

    response = client.post(
        url("message-edit", incident, segment_id=segment.pk),
        form_data(based_on=1, content={"en": EN | {"subject": "Sorry"}, "de": DE}),
    )

    assert "Someone saved version 2 while you were editing version 1." in text(response)
    assert "Sorry" in [f.value() for f in response.context["form"]]  # what was typed is kept
    assert MessageVersion.objects.count() == 2


def test_a_double_click_on_save_saves_one_version(login, support_sam, incident, segment):
    client = login(support_sam)
    target = url("message-edit", incident, segment_id=segment.pk)

    client.post(target, form_data())
    second = client.post(target, form_data(), follow=True)

    assert MessageVersion.objects.count() == 1
    # The first press's message waits too: the browser never showed its page.
    assert messages_of(second) == [
        "Saved version 1. Preview it, then ask Comms for approval.",
        "Version 1 already holds exactly this; nothing new was saved.",
    ]


def test_adding_and_removing_a_language_keeps_what_was_typed(login, support_sam, incident, segment):
    client = login(support_sam)
    target = url("message-edit", incident, segment_id=segment.pk)

    added = client.post(target, form_data(add_locale="1", new_locale="NL"))

    assert added.context["form"].locale_list == ["en", "de", "nl"]
    assert added.context["form"]["content-de-subject"].value() == DE["subject"]
    assert "Dutch (nl)" in text(added)
    assert not MessageVersion.objects.exists()

    removed = client.post(target, form_data(remove_locale="de"))
    assert removed.context["form"].locale_list == ["en"]
    assert removed.context["form"]["content-en-subject"].value() == EN["subject"]

    bad = client.post(target, form_data(add_locale="1", new_locale="not a locale"))
    assert bad.context["form"].errors["new_locale"] == [
        "“not a locale” is not a locale such as “fr” or “de-at”."
    ]
    assert not MessageVersion.objects.exists()


def test_comms_and_auditors_cannot_open_the_draft_form(
    login, client, comms_cleo, auditor_abe, incident, segment
):
    for user in (comms_cleo, auditor_abe):
        client.logout()
        login(user)
        assert client.get(url("message-edit", incident, segment_id=segment.pk)).status_code == 403


# --- History and diff -----------------------------------------------------------------------


def test_the_history_lists_versions_and_the_diff_marks_added_and_removed_lines(
    login, support_sam, admin_ada, incident, segment
):
    first = save(support_sam, segment)
    changed = EN | {"text": EN["text"].replace("We are sorry.", "We are very sorry.")}
    second = save(admin_ada, segment, content={"en": changed, "de": DE})
    client = login(support_sam)

    history = client.get(url("message", incident, segment_id=segment.pk))
    page = text(history)
    assert "Version 2" in page and "Version 1" in page
    assert first.content_hash in page and second.content_hash in page
    assert "admin_ada" in page and "support_sam" in page

    diff = client.get(url("message-diff", incident, segment_id=segment.pk), {"a": 1, "b": 2})
    markup = diff.content.decode()
    assert "English (en) · Plain text" in text(diff)
    assert (
        '<span class="diff__line diff__line--del">-it was not meant for you. We are sorry.</span>'
        in markup
    )
    assert (
        '<span class="diff__line diff__line--add">+it was not meant for you. We are very sorry.'
        "</span>" in markup
    )
    assert "German" not in text(diff)  # unchanged fields are left out


# --- Preview -----------------------------------------------------------------------------------


def test_the_preview_shows_real_content_in_english_and_german_with_html_only_in_a_sandbox(
    login, support_sam, incident, segment, people
):
    version = save(support_sam, segment)
    ann = people["ann@example.com"]
    client = login(support_sam)

    english = client.get(vurl("version-preview", version), {"person": ann.pk})

    page = text(english)
    assert "As ann@example.com gets it, in English (en)" in page
    assert EN["subject"] in page
    assert "Amends Care <care@retailer.example>" in page
    assert "help@retailer.example" in page
    assert "Dear Ann, it was not meant for you." in page
    (frame,) = iframes(english)
    assert re.search(r"\ssandbox[\s>]", frame) and "allow-" not in frame
    assert srcdoc(english) == "<p>Dear Ann,</p><p>It was not meant for you.</p>"
    assert "<p>Dear Ann" not in english.content.decode()  # the HTML is only in the iframe

    german = client.get(vurl("version-preview", version), {"person": ann.pk, "locale": "de"})

    assert "in German (de)" in text(german)
    assert DE["subject"] in text(german)
    assert "Liebe/r Ann, Das tut uns leid." in text(german)
    assert srcdoc(german) == "<p>Liebe/r Ann,</p>"


def test_a_customer_name_with_html_is_escaped_in_the_preview(
    login, support_sam, incident, segment, people
):
    version = save(support_sam, segment)
    eve = people["eve@example.com"]

    response = login(support_sam).get(vurl("version-preview", version), {"person": eve.pk})

    markup = response.content.decode()
    assert "<b>Eve</b>" not in markup and "<script>alert" not in markup
    assert f"Dear {EVIL_NAME}," in text(response)  # the plain text shows it as text
    assert "<p>Dear &lt;b&gt;Eve&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;,</p>" in srcdoc(
        response
    )


def test_the_demo_incidents_preview_shows_real_content_in_english_and_german(db, client):
    call_command("seed_demo", verbosity=0)
    incident = Incident.objects.get(title=demo.DEMO_TITLE)
    everyone = incident.segments.get(is_default=True)
    version = MessageVersion.objects.filter(message__segment=everyone).order_by("-number")[0]
    client.force_login(get_user_model().objects.get(username="comms_cleo"))

    for locale, name in (("en", "English (en)"), ("de", "German (de)")):
        person = AffectedPerson.objects.filter(segment=everyone, locale=locale).first()
        response = client.get(vurl("version-preview", version), {"person": person.pk})

        rendered = response.context["rendered"]
        assert rendered == render_version(version=version, person=person)
        assert rendered.locale == locale and not rendered.fell_back
        page = text(response)
        assert f"As {person.original_address} gets it, in {name}" in page
        assert rendered.subject in page
        assert person.metadata["first_name"] in rendered.text
        assert srcdoc(response) == rendered.html and person.metadata["first_name"] in rendered.html


def test_people_are_found_by_address_or_id_and_sampled_at_random(
    login, support_sam, incident, segment, people
):
    version = save(support_sam, segment)
    client = login(support_sam)

    found = client.get(vurl("version-preview", version), {"q": "bernd"})
    assert [p.address for p in found.context["found"]] == ["bernd@example.de"]
    by_id = client.get(vurl("version-preview", version), {"q": str(people["zoe@example.fr"].pk)})
    assert [p.address for p in by_id.context["found"]] == ["zoe@example.fr"]

    sample = client.get(vurl("version-preview", version), {"sample": "1"})
    assert sample.context["person"] in sample.context["sample"]
    assert len(sample.context["sample"]) >= 1
    assert sample.context["rendered"].subject in (EN["subject"], DE["subject"])

    nobody = client.get(vurl("version-preview", version), {"q": "nobody@nowhere"})
    assert "Nobody in “Everyone else” matches “nobody@nowhere”." in text(nobody)
    assert "With sample values, in English (en)" in text(nobody)
    assert "Dear Alex," in text(nobody)


def test_warnings_show_for_a_missing_locale(login, support_sam, incident, segment, people):
    version = save(support_sam, segment)
    client = login(support_sam)
    zoe = people["zoe@example.fr"]
    warning = (
        "1 person in “Everyone else” has the locale “fr”, which has no variant; "
        "they get the “en” version."
    )

    for page in (
        client.get(vurl("version", version)),
        client.get(vurl("version-preview", version), {"person": zoe.pk}),
    ):
        assert "1 warning: check before approving" in text(page)
        assert warning in text(page)
    preview = client.get(vurl("version-preview", version), {"person": zoe.pk})
    assert "This person's language (fr) has no variant, so they get the fallback" in text(preview)


# --- Test sends ---------------------------------------------------------------------------------


def test_a_test_send_reaches_only_the_seed_list_and_the_outbox_shows_it(
    login, client, support_sam, admin_ada, incident, segment, settings
):
    settings.MAILERS = {"default": {"BACKEND": "campaigns.mail.SandboxBackend"}}
    version = save(support_sam, segment)
    client = login(support_sam)
    form = client.get(vurl("version-test-send", version))
    assert form.context["form"]["addresses"].value() == "seed@amends.example\nqa@amends.example"
    assert reverse("campaigns:outbox") not in form.content.decode()  # Support has no outbox

    refused = client.post(
        vurl("version-test-send", version),
        {"addresses": "seed@amends.example, ceo@retailer.example", "locales": ["en", "de"]},
    )

    assert "Not on it: ceo@retailer.example. Nothing was sent." in text(refused)
    assert not OutboxMessage.objects.exists() and not TestSend.objects.exists()

    sent = client.post(
        vurl("version-test-send", version),
        {"addresses": "seed@amends.example", "locales": ["de"]},
        follow=True,
    )

    assert messages_of(sent) == [
        "Sent 1 test email (de) to the seed list. They are marked as tests and count nowhere."
    ]
    kept = OutboxMessage.objects.get()
    assert kept.to == ["seed@amends.example"]
    assert kept.subject == f"[TEST] {DE['subject']}"
    assert "1 email to 1 seed address (de) by support_sam" in text(sent)

    client.logout()
    login(admin_ada)
    assert (
        reverse("campaigns:outbox")
        in client.get(vurl("version-test-send", version)).content.decode()
    )
    outbox = client.get(reverse("campaigns:outbox"))
    assert f"[TEST] {DE['subject']}" in text(outbox)
    detail = client.get(reverse("campaigns:outbox-message", kwargs={"message_id": kept.pk}))
    assert "Liebe/r Alex," in text(detail)
    assert srcdoc(detail) == kept.html
    assert "X-Amends-Test" in text(detail)


def test_a_double_click_on_send_the_test_sends_once(login, support_sam, segment, mailoutbox):
    version = save(support_sam, segment)
    client = login(support_sam)
    data = {"addresses": "seed@amends.example", "locales": ["en"]}

    client.post(vurl("version-test-send", version), data)
    again = client.post(vurl("version-test-send", version), data, follow=True)

    assert len(mailoutbox) == 1 and TestSend.objects.count() == 1
    assert messages_of(again)[-1] == (
        "You sent this test a moment ago (the form was sent twice); not sent again."
    )


def test_only_admins_see_the_outbox(login, client, support_sam, comms_cleo, auditor_abe):
    for user in (support_sam, comms_cleo, auditor_abe):
        client.logout()
        login(user)
        assert client.get(reverse("campaigns:outbox")).status_code == 403


# --- Approval -------------------------------------------------------------------------------------


def test_support_asks_for_approval_and_a_second_press_sends_nothing(
    login,
    support_sam,
    comms_cleo,
    incident,
    segment,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    version = save(support_sam, segment)
    client = login(support_sam)

    with django_capture_on_commit_callbacks(execute=True):
        asked = client.post(vurl("version-request-approval", version), follow=True)
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(vurl("version-request-approval", version), follow=True)

    assert messages_of(asked) == ["Asked comms_cleo to approve version 1."]
    assert [m.to for m in mailoutbox] == [["comms_cleo@amends.example"]]
    assert messages_of(again)[0].startswith("support_sam asked for approval of version 1 at ")
    assert messages_of(again)[0].endswith("Nothing was sent again.")
    assert AuditEntry.objects.filter(action="message.approval_requested").count() == 1
    assert "Approval asked for by support_sam" in text(again)


def test_the_author_cannot_approve_their_own_version(login, client, admin_ada, incident, segment):
    version = save(admin_ada, segment)  # Admin may both draft and decide
    client = login(admin_ada)

    page = client.get(vurl("version", version))
    assert "You wrote version 1 of this message, so you cannot approve or reject it" in text(page)
    assert vurl("version-approve", version) not in page.content.decode()
    assert vurl("version-reject", version) not in page.content.decode()
    confirm = client.get(vurl("version-approve", version))
    assert "You cannot approve this version" in text(confirm)
    assert 'name="confirm"' not in confirm.content.decode()

    forced = client.post(
        vurl("version-approve", version),
        {"confirm": "approve", "content_hash": version.content_hash},
        follow=True,
    )

    assert messages_of(forced) == [
        "Nothing was approved: You wrote version 1; someone who did not write it must decide on it."
    ]
    assert not Approval.objects.exists()


def test_support_cannot_approve_even_by_posting(login, support_sam, segment):
    version = save(support_sam, segment)
    response = login(support_sam).post(
        vurl("version-approve", version),
        {"confirm": "approve", "content_hash": version.content_hash},
    )
    assert response.status_code == 403
    assert not Approval.objects.exists()


def test_comms_approves_after_confirming_and_an_edit_afterwards_awaits_approval(
    login, client, support_sam, comms_cleo, incident, segment
):
    version = save(support_sam, segment)
    client = login(comms_cleo)
    page = client.get(vurl("version", version))
    assert f'href="{vurl("version-approve", version)}"' in page.content.decode()

    unconfirmed = client.post(vurl("version-approve", version), {})
    assert unconfirmed.status_code == 302 and unconfirmed["Location"] == vurl(
        "version-approve", version
    )
    assert not Approval.objects.exists()

    confirm = client.get(vurl("version-approve", version))
    assert "Approve version 1?" in text(confirm)
    assert version.content_hash in text(confirm)
    assert "It cannot be undone" in text(confirm)
    approved = client.post(
        vurl("version-approve", version),
        {"confirm": "approve", "content_hash": version.content_hash, "comment": "Kind and clear."},
        follow=True,
    )

    assert messages_of(approved) == [
        "You approved version 1 (1 of 1). It is approved and ready to send."
    ]
    assert "Approved v1" in text(approved)
    approval = Approval.objects.get()
    assert (approval.approver, approval.content_hash, approval.comment) == (
        comms_cleo,
        version.content_hash,
        "Kind and clear.",
    )
    assert "Approved v1" in text(client.get(url("messages", incident)))

    again = client.post(
        vurl("version-approve", version),
        {"confirm": "approve", "content_hash": version.content_hash},
        follow=True,
    )
    assert messages_of(again) == ["Nothing was approved: You already approved version 1."]
    assert Approval.objects.count() == 1

    client.logout()
    login(support_sam)
    client.post(
        url("message-edit", incident, segment_id=segment.pk),
        form_data(based_on=1, content={"en": EN | {"subject": "We are sorry"}, "de": DE}),
    )
    tab = text(client.get(url("messages", incident)))
    assert "Draft v2 awaiting approval (0 of 1)" in tab
    assert "Approved v1" not in tab


def test_approving_a_hash_other_than_the_versions_is_refused(
    login, support_sam, comms_cleo, segment
):
    version = save(support_sam, segment)

    response = login(comms_cleo).post(
        vurl("version-approve", version),
        {"confirm": "approve", "content_hash": "0" * 64},
        follow=True,
    )

    assert messages_of(response)[0].startswith("Nothing was approved: the form did not name")
    assert not Approval.objects.exists()


def test_a_rejection_needs_a_comment_which_reaches_the_author(
    login,
    support_sam,
    comms_cleo,
    incident,
    segment,
    mailoutbox,
    django_capture_on_commit_callbacks,
):
    version = save(support_sam, segment)
    client = login(comms_cleo)

    empty = client.post(
        vurl("version-reject", version), {"content_hash": version.content_hash, "comment": " "}
    )

    assert empty.status_code == 200
    assert empty.context["reject_form"].errors["comment"] == [
        "Say what needs to change, for the author."
    ]
    assert not Approval.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        rejected = client.post(
            vurl("version-reject", version),
            {"content_hash": version.content_hash, "comment": "Too cheerful for this news."},
            follow=True,
        )

    assert messages_of(rejected) == ["You rejected version 1. Its author was emailed your comment."]
    assert Approval.objects.get().decision == Approval.Decision.REJECTED
    assert [m.to for m in mailoutbox] == [["support_sam@amends.example"]]
    tab = text(client.get(url("messages", incident)))
    assert "Rejected v1" in tab and "Too cheerful for this news." in tab
    client.logout()
    login(support_sam)
    assert "Revise it: save a new version." in text(client.get(url("messages", incident)))


def test_sev1_needs_two_approvers(
    login, client, support_sam, comms_cleo, comms_cole, incident, segment
):
    incident_services.incident_update(
        incident=incident, by=Actor.for_user(support_sam), severity="SEV1"
    )
    version = save(support_sam, segment)
    approve = {"confirm": "approve", "content_hash": version.content_hash}

    first = login(comms_cleo).post(vurl("version-approve", version), approve, follow=True)

    assert messages_of(first) == ["You approved version 1 (1 of 2). It needs 1 more approval."]
    assert "1 of 2 approvals (SEV1 incidents need 2, from different people)" in text(first)
    assert "Draft v1 awaiting approval (1 of 2)" in text(first)

    client.logout()
    second = login(comms_cole).post(vurl("version-approve", version), approve, follow=True)

    assert messages_of(second) == [
        "You approved version 1 (2 of 2). It is approved and ready to send."
    ]
    assert "Approved v1" in text(second)
    assert services.version_is_approved(version)


# --- Auditors, and every page's markup -----------------------------------------------------------


def test_auditors_can_view_every_message_page_but_every_post_is_refused(
    login, client, support_sam, auditor_abe, incident, segment, people
):
    version = save(support_sam, segment)
    client = login(auditor_abe)
    for page in (
        url("messages", incident),
        url("message", incident, segment_id=segment.pk),
        url("message-diff", incident, segment_id=segment.pk),
        vurl("version", version),
        vurl("version-preview", version) + f"?person={people['ann@example.com'].pk}",
    ):
        response = client.get(page)
        assert response.status_code == 200, page
        assert "Ask Comms for approval" not in text(response)
    audit_before = AuditEntry.objects.count()

    posts = [
        (url("message-edit", incident, segment_id=segment.pk), form_data(based_on=1)),
        (vurl("version-test-send", version), {"addresses": "seed@amends.example"}),
        (vurl("version-request-approval", version), {}),
        (vurl("version-approve", version), {"confirm": "approve", "content_hash": "x"}),
        (vurl("version-reject", version), {"comment": "No", "content_hash": "x"}),
    ]
    for target, data in posts:
        assert client.post(target, data).status_code == 403, target

    assert AuditEntry.objects.count() == audit_before
    assert MessageVersion.objects.count() == 1
    assert not Approval.objects.exists() and not TestSend.objects.exists()


def _nonce(response) -> str:
    return re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)


def test_every_message_page_renders_without_inline_styles_or_unnonced_scripts(
    login, client, support_sam, comms_cleo, admin_ada, incident, segment, people, settings
):
    settings.MAILERS = {"default": {"BACKEND": "campaigns.mail.SandboxBackend"}}
    first = save(support_sam, segment)
    version = save(support_sam, segment, sender_name="Care", based_on=1)
    services.version_test_send(
        version=version, addresses=["seed@amends.example"], by=Actor.for_user(support_sam)
    )
    kept = OutboxMessage.objects.first()
    eve = people["eve@example.com"]
    client = login(support_sam)
    pages = [
        client.get(incident.get_absolute_url()),
        client.get(url("messages", incident)),
        client.get(url("message", incident, segment_id=segment.pk)),
        client.get(url("message-diff", incident, segment_id=segment.pk)),
        client.get(url("message-edit", incident, segment_id=segment.pk)),
        client.post(
            url("message-edit", incident, segment_id=segment.pk),
            form_data(based_on=2, content={"en": EN | {"text": "{{ nope }}"}}, locales=("en",)),
        ),
        client.get(vurl("version", first)),
        client.get(vurl("version", version)),
        client.get(vurl("version-preview", version), {"person": eve.pk}),
        client.get(vurl("version-preview", version), {"sample": "1", "locale": "de"}),
        client.get(vurl("version-preview", version), {"q": "example"}),
        client.get(vurl("version-test-send", version)),
    ]
    client.logout()
    login(comms_cleo)
    pages += [
        client.get(vurl("version", version)),
        client.get(vurl("version-approve", version)),
        client.post(vurl("version-reject", version), {"content_hash": version.content_hash}),
    ]
    client.logout()
    login(admin_ada)
    pages += [
        client.get(reverse("campaigns:outbox")),
        client.get(reverse("campaigns:outbox-message", kwargs={"message_id": kept.pk})),
    ]

    assert all(p.status_code == 200 for p in pages), [p.status_code for p in pages]
    for page in pages:
        markup = page.content.decode()
        where = page.request["PATH_INFO"]
        assert not re.search(r"\sstyle\s*=", markup, re.IGNORECASE), where
        assert "<style" not in markup, where
        assert "{#" not in markup and "{%" not in markup, where
        for tag in re.findall(r"<script[^>]*>", markup):
            assert f'nonce="{_nonce(page)}"' in tag, where
            assert 'src="/static/' in tag, where
        assert not re.search(r"<script[^>]*>\s*[^<\s]", markup), f"inline script on {where}"
        assert re.search(r"\shx-on|\son[a-z]+\s*=", markup) is None, where
        for frame in iframes(page):
            assert re.search(r"\ssandbox[\s>]", frame) and "allow-" not in frame, where


def test_the_outbox_is_in_the_navigation_only_for_those_who_may_see_it(
    login, client, admin_ada, support_sam
):
    assert 'href="/outbox/"' in login(admin_ada).get("/").content.decode()
    client.logout()
    assert 'href="/outbox/"' not in login(support_sam).get("/").content.decode()
