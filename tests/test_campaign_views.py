"""The sending pages (launch, progress, pause/resume/cancel, uncertain deliveries), as people use them.

Django's locmem mail backend stands in for the ESP: `mail.outbox` holds what was
"sent". Jobs run through `run_jobs` (a real rq worker with REDIS_URL, in-process
otherwise). Sending threads use their own database connections, so these tests
commit (transactional_audit).
"""

import html
import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from campaigns import sending, services
from campaigns.models import Campaign, Delivery
from incidents.actors import Actor
from incidents.models import AffectedPerson, AuditEntry
from incidents.services.audience import default_segment
from tests.factories import freeze_people

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
TEMPLATE = "registry-gift-purchased"
CONTENT = {
    "en": {
        "subject": "We sent you an email by mistake",
        "text": "Dear {{ first_name|default('customer') }}, we are sorry. "
        "Code: {{ verification_code }}",
        "html": "",
    }
}
Status = Delivery.Status


class SlowBackend(EmailBackend):
    """locmem with an ESP's round trip, and a hook after each message (to press a button)."""

    after_send = None

    def send_messages(self, messages):
        sent = super().send_messages(messages)
        time.sleep(0.03)
        if SlowBackend.after_send is not None:
            SlowBackend.after_send()
        return sent


@pytest.fixture(autouse=True)
def _sending_settings(transactional_audit, settings):
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    settings.SEND_RATE_LIMIT = 1000
    settings.SEND_BATCH_SIZE = 500
    settings.SEND_CONCURRENCY = 2
    settings.SEND_CONTROL_CHECK_SECONDS = 0.02
    settings.SEND_MAX_INLINE_WAIT_SECONDS = 5
    settings.SEND_REDIS_PREFIX = f"amends-test:{time.monotonic_ns()}"
    SlowBackend.after_send = None
    if settings.REDIS_URL:
        import django_rq

        django_rq.get_queue("send").empty()
    yield
    SlowBackend.after_send = None


def as_user(user):
    return Actor.for_user(user)


def add_people(incident, user, count, *, start=0):
    rows = [
        (f"m{i}", f"Person{i}@Example.com", "en", {"first_name": f"P{i}"})
        for i in range(start, start + count)
    ]
    freeze_people(incident, user, rows, template=TEMPLATE)


@pytest.fixture
def segment(incident):
    return default_segment(incident)


@pytest.fixture
def people(incident, support_sam, segment):
    add_people(incident, support_sam, 12)
    return list(AffectedPerson.objects.filter(incident=incident).order_by("id"))


def save_version(segment, author, **fields):
    return services.version_create(
        by=as_user(author),
        segment=segment,
        sender_name="Amends Care",
        sender_address="care@retailer.example",
        fallback_locale="en",
        content=fields.pop("content", CONTENT),
        **fields,
    )


@pytest.fixture
def version(segment, support_sam, comms_cleo):
    version = save_version(segment, support_sam)
    services.version_approve(version=version, by=as_user(comms_cleo))
    return version


def url(name: str, incident, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"reference": incident.reference, **kwargs})


def curl(name: str, campaign) -> str:
    return url(name, campaign.incident, campaign_id=campaign.pk)


def launch_url(version) -> str:
    return url(
        "campaign-launch",
        version.message.incident,
        segment_id=version.message.segment_id,
        number=version.number,
    )


def text(response) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed, entities decoded."""
    page = response.content.decode()
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def hidden_fields(response) -> dict:
    """What the confirmation form sends back: its hidden inputs, as the browser would."""
    fields = {}
    for tag in re.findall(r'<input type="hidden"[^>]*>', response.content.decode()):
        name = re.search(r'name="([^"]*)"', tag).group(1)
        value = re.search(r'value="([^"]*)"', tag)
        fields[name] = html.unescape(value.group(1)) if value else ""
    return fields


SETTINGS = {"rate_limit": "1000", "batch_size": "5", "mailer": "default"}


def confirm_launch(client, version, **data):
    """The settings step, then the confirmation page; returns that page."""
    page = client.post(launch_url(version), SETTINGS | data)
    assert page.status_code == 200
    assert page.context["step"] == "confirm", text(page)
    return page


def outbox_recipients() -> Counter:
    return Counter(address for message in mail.outbox for address in message.to)


def counts(campaign) -> dict[str, int]:
    return dict(Counter(campaign.deliveries.values_list("status", flat=True)))


# --- Launch -------------------------------------------------------------------------------------


def test_support_launches_an_approved_version_and_the_jobs_send_everyone_once(
    login, support_sam, incident, segment, people, version, run_jobs, settings
):
    suppressed = people[3]
    services.suppression_add(
        address=suppressed.address, reason="complaint", source="manual", by=as_user(support_sam)
    )
    client = login(support_sam)
    tab = client.get(url("sending", incident))
    assert 'aria-current="page">Sending</a>' in tab.content.decode()
    assert "Approved v1: ready to send to 12 people." in text(tab)
    assert f'href="{launch_url(version)}"' in tab.content.decode()

    form = client.get(launch_url(version))
    assert form.context["form"]["rate_limit"].value() == 1000
    assert form.context["form"]["batch_size"].value() == 500

    page = confirm_launch(client, version)
    said = text(page)
    assert "11 people will receive version 1 of the apology for “Everyone else”." in said
    assert "1 suppressed address will be skipped and recorded as suppressed." in said
    assert version.content_hash in said
    assert not Campaign.objects.exists()  # nothing happens before the confirmation

    confirm = hidden_fields(page)
    assert confirm["confirm"] == "launch" and confirm["content_hash"] == version.content_hash
    with run_jobs():
        launched = client.post(launch_url(version), confirm)

    campaign = Campaign.objects.get()
    assert launched.status_code == 302 and launched["Location"] == curl("campaign", campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert (campaign.launched_by, campaign.rate_limit, campaign.batch_size) == (
        support_sam,
        1000,
        5,
    )
    assert counts(campaign) == {Status.SENT: 11, Status.SUPPRESSED: 1}
    # The ESP got one message per person not suppressed, each with exactly one recipient.
    assert len(mail.outbox) == 11
    for message in mail.outbox:
        assert len(message.to) == 1 and not message.cc and not message.bcc
    expected = {p.original_address for p in people if p != suppressed}
    assert outbox_recipients() == Counter(expected)
    entry = AuditEntry.objects.get(action="campaign.launched")
    assert entry.actor == support_sam and entry.after["suppressed"] == 1

    shown = client.get(curl("campaign", campaign))
    assert messages_of(shown) == [
        f"Launched campaign #{campaign.pk}: 11 people get version 1; 1 suppressed address skipped."
    ]
    assert "Finished" in text(shown) and "11 sent" in text(shown)

    # The confirmation sent twice (a double click): nothing is launched or sent again.
    with run_jobs():
        again = client.post(launch_url(version), confirm, follow=True)
    assert messages_of(again) == [
        "You launched this a moment ago (the form was sent twice); nothing was launched again."
    ]
    assert Campaign.objects.count() == 1 and len(mail.outbox) == 11


def test_bad_settings_are_refused_on_the_form_and_change_nothing(
    login, support_sam, segment, people, version
):
    response = login(support_sam).post(
        launch_url(version), {"rate_limit": "0", "batch_size": "", "mailer": "nowhere"}
    )

    assert response.status_code == 200 and response.context["step"] == "settings"
    errors = response.context["form"].errors
    assert errors["rate_limit"] == ["Ensure this value is greater than or equal to 1."]
    assert errors["batch_size"] == ["Give a batch size of at least 1."]
    assert "mailer" in errors
    assert not Campaign.objects.exists() and mail.outbox == []


def test_an_unapproved_version_cannot_be_launched_and_nothing_is_created(
    login, support_sam, incident, segment, people, run_jobs
):
    draft = save_version(segment, support_sam)
    client = login(support_sam)

    tab = text(client.get(url("sending", incident)))
    assert "Draft v1 awaiting approval (0 of 1): only an approved version can be sent." in tab
    assert "campaign-launch" not in tab and ">Launch<" not in tab
    assert "Launch…" not in text(
        client.get(url("version", incident, segment_id=segment.pk, number=1))
    )

    page = client.get(launch_url(draft))
    assert "This version cannot be sent" in text(page)
    assert "Version 1 is not approved yet (0 of 1 approvals)" in text(page)
    # Even a forged confirmation is refused, and changes nothing.
    forged = SETTINGS | {"confirm": "launch", "content_hash": draft.content_hash, "token": "t"}
    with run_jobs():
        refused = client.post(launch_url(draft), forged)
    assert refused.status_code == 200
    assert "Nothing was launched." in text(refused)
    assert not Campaign.objects.exists() and not Delivery.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="campaign.").exists()
    assert mail.outbox == []


def test_a_version_edited_after_the_confirmation_is_refused_and_nothing_is_sent(
    login, support_sam, segment, people, version, run_jobs
):
    client = login(support_sam)
    page = confirm_launch(client, version)
    # Edited in the database behind the approval's back: the hash no longer matches.
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # as a superuser could, skipping the trigger
            cursor.execute("SET LOCAL session_replication_role = replica")
        tampered = json.dumps({"en": CONTENT["en"] | {"text": "Claim your gift at evil.example"}})
        cast = "::jsonb" if connection.vendor == "postgresql" else ""
        cursor.execute(
            f"UPDATE campaigns_messageversion SET content = %s{cast} WHERE id = %s",
            [tampered, version.pk],
        )

    with run_jobs():
        refused = client.post(launch_url(version), hidden_fields(page))

    assert refused.status_code == 200
    assert "was altered after it was saved, so its approval no longer holds" in text(refused)
    assert not Campaign.objects.exists() and mail.outbox == []


def test_an_older_version_cannot_be_launched_once_a_newer_one_is_saved(
    login, support_sam, segment, people, version
):
    client = login(support_sam)
    page = confirm_launch(client, version)
    save_version(segment, support_sam, content={"en": CONTENT["en"] | {"subject": "Sorry"}})

    refused = client.post(launch_url(version), hidden_fields(page))

    assert "Version 1 is not the latest; version 2 replaced it." in text(refused)
    assert not Campaign.objects.exists()


def test_people_already_in_a_campaign_are_skipped_and_send_again_needs_a_reason(
    login, support_sam, incident, segment, people, version, run_jobs
):
    client = login(support_sam)
    with run_jobs():
        client.post(launch_url(version), hidden_fields(confirm_launch(client, version)))
    first = Campaign.objects.get()
    assert len(mail.outbox) == 12

    tab = text(client.get(url("sending", incident)))
    assert "Everyone in this segment is in a campaign." in tab and "Send again…" in tab

    nobody = client.post(launch_url(version), SETTINGS)
    assert nobody.context["step"] == "settings"
    assert (
        "Everyone in “Everyone else” (12 people) is already in a campaign of this incident. "
        "To send it to them again, tick “send again” and say why."
    ) in text(nobody)
    no_reason = client.post(launch_url(version), SETTINGS | {"send_again": "on"})
    assert no_reason.context["form"].errors["resend_reason"] == [
        "Say why these people should get the apology again."
    ]
    blank = client.post(launch_url(version), SETTINGS | {"send_again": "on", "resend_reason": " "})
    assert blank.context["form"].errors["resend_reason"]
    untick = client.post(launch_url(version), SETTINGS | {"resend_reason": "A typo"})
    assert untick.context["form"].errors["send_again"]
    assert Campaign.objects.count() == 1 and len(mail.outbox) == 12

    page = confirm_launch(
        client, version, send_again="on", resend_reason="The first one named the wrong store"
    )
    assert (
        "12 of them already had an apology from this incident and get it again, because: "
        "“The first one named the wrong store”."
    ) in text(page)
    with run_jobs():
        client.post(launch_url(version), hidden_fields(page))

    again = Campaign.objects.exclude(pk=first.pk).get()
    assert again.is_resend and again.resend_reason == "The first one named the wrong store"
    assert len(mail.outbox) == 24 and set(outbox_recipients().values()) == {2}
    entry = AuditEntry.objects.filter(action="campaign.launched").last()
    assert entry.after["resend_reason"] == "The first one named the wrong store"


def test_people_added_after_launch_get_a_top_up_from_the_same_campaign(
    login, support_sam, incident, segment, people, version, run_jobs
):
    client = login(support_sam)
    with run_jobs():
        client.post(launch_url(version), hidden_fields(confirm_launch(client, version)))
    campaign = Campaign.objects.get()
    add_people(incident, support_sam, 2, start=100)

    tab = text(client.get(url("sending", incident)))
    assert "2 people added since launch have no apology yet: top up this campaign." in tab
    page = client.get(curl("campaign", campaign))
    assert "Top up: add 2 people" in text(page)

    with run_jobs():
        topped = client.post(curl("campaign-top-up", campaign), follow=True)

    assert messages_of(topped) == [
        f"Added 2 people to campaign #{campaign.pk}, under the same approval."
    ]
    assert len(mail.outbox) == 14 and max(outbox_recipients().values()) == 1
    again = client.post(curl("campaign-top-up", campaign), follow=True)
    assert messages_of(again) == [
        "Everyone in the segment is already in a campaign. Nothing changed."
    ]


# --- Progress and control -------------------------------------------------------------------


def launch_and_press(client, version, run_jobs, backend, *, after: int, press):
    """Launch through the pages; after `after` messages reach the ESP, `press` a button."""
    pressed = []

    def hook():
        if len(mail.outbox) >= after and not pressed:
            pressed.append(press())

    backend.after_send = hook
    page = confirm_launch(client, version)
    with run_jobs():
        client.post(launch_url(version), hidden_fields(page))
    backend.after_send = None
    assert pressed, "the button was never pressed"
    return Campaign.objects.get(), pressed[0]


@pytest.fixture
def slow_esp(settings):
    """The SlowBackend class as Django's mailers import it (tests/ is not a package)."""
    path = f"{SlowBackend.__module__}.SlowBackend"
    settings.MAILERS = {"default": {"BACKEND": path}}
    settings.SEND_CONCURRENCY = 1
    backend = import_string(path)
    yield backend
    backend.after_send = None


def test_pause_then_resume_finishes_without_resending_anyone(
    login, support_sam, people, version, run_jobs, slow_esp
):
    client = login(support_sam)

    def pause():
        campaign = Campaign.objects.get()
        return client.post(
            curl("campaign-pause", campaign), {"reason": "Legal asked us to wait"}, follow=True
        )

    campaign, paused = launch_and_press(client, version, run_jobs, slow_esp, after=4, press=pause)

    campaign.refresh_from_db()
    at_pause = len(mail.outbox)
    assert campaign.status == Campaign.Status.PAUSED
    assert campaign.paused_reason == "Legal asked us to wait"
    assert 4 <= at_pause < 12  # workers stopped within a control check
    state = counts(campaign)
    assert state == {Status.SENT: at_pause, Status.QUEUED: 12 - at_pause}
    assert messages_of(paused)[-1:] == [
        f"Paused campaign #{campaign.pk}. Workers stop within 1 second; messages already handed "
        "to the ESP finish. Nothing more is sent until you resume."
    ]
    page = client.get(curl("campaign", campaign))
    said = text(page)
    assert "Why it is paused: Legal asked us to wait" in said
    assert f"{12 - at_pause} still to send" in said and "none while paused" in said
    assert ">Resume</button>" in page.content.decode()
    assert ">Pause</button>" not in page.content.decode()
    twice = client.post(curl("campaign-pause", campaign), {"reason": "again"}, follow=True)
    assert messages_of(twice) == [f"Campaign #{campaign.pk} is already paused. Nothing changed."]

    with run_jobs():
        resumed = client.post(curl("campaign-resume", campaign))
    assert resumed.status_code == 302

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    assert counts(campaign) == {Status.SENT: 12}
    assert len(mail.outbox) == 12 and set(outbox_recipients().values()) == {1}
    page = client.get(curl("campaign", campaign))
    assert messages_of(page) == [
        f"Resumed campaign #{campaign.pk}: sending the {12 - at_pause} deliveries still queued. "
        "Nobody who already got it is sent it again."
    ]
    assert [a for a in AuditEntry.objects.values_list("action", flat=True) if "campaign." in a] == [
        "campaign.launched",
        "campaign.paused",
        "campaign.resumed",
        "campaign.completed",
    ]


def test_the_progress_partial_shows_counts_a_progress_bar_rate_and_polls(
    login, client, support_sam, auditor_abe, people, version, run_jobs, slow_esp
):
    client = login(support_sam)

    def pause():
        return client.post(curl("campaign-pause", Campaign.objects.get()), {})

    campaign, _ = launch_and_press(client, version, run_jobs, slow_esp, after=3, press=pause)
    sent = counts(campaign)[Status.SENT]
    client.logout()
    client = login(auditor_abe)

    partial = client.get(curl("campaign-progress", campaign))

    markup = partial.content.decode()
    assert "<html" not in markup  # a fragment, for htmx to swap in
    assert f'<progress class="progress" max="12" value="{sent}"' in markup
    said = text(partial)
    assert f"{sent} sent" in said and f"{12 - sent} queued" in said
    assert f"Paused: {sent} of 12 done, {12 - sent} still to send." in said
    assert "Paused by support_sam." in said  # the reason when none was given
    assert partial.context["progress"].rate > 0 and "messages/s" in said
    assert f'hx-get="{curl("campaign-progress", campaign)}?shown=paused"' in markup
    assert 'hx-trigger="every 2s"' in markup
    # Without JavaScript, the page refreshes itself while the campaign is unfinished.
    page = client.get(curl("campaign", campaign)).content.decode()
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
    # The page was drawn while running: htmx reloads it so the buttons match.
    stale = client.get(
        curl("campaign-progress", campaign) + "?shown=running", headers={"HX-Request": "true"}
    )
    assert stale["HX-Refresh"] == "true"
    fresh = client.get(
        curl("campaign-progress", campaign) + "?shown=paused", headers={"HX-Request": "true"}
    )
    assert "HX-Refresh" not in fresh


def test_a_running_campaign_shows_an_eta_and_a_finished_one_stops_polling(
    login, support_sam, people, version, run_jobs
):
    client = login(support_sam)
    page = confirm_launch(client, version)
    with run_jobs(), transaction.atomic():  # the jobs start when this commits
        client.post(launch_url(version), hidden_fields(page))
        campaign = Campaign.objects.get()
        running = client.get(curl("campaign-progress", campaign))
        assert "Sending: 0 of 12 done (0%)." in text(running)
        assert "at the rate limit of 1000/s (nothing sent in the last minute)" in text(running)

    done = client.get(curl("campaign-progress", campaign))
    assert "Finished" in text(done) and "12 of 12 done" in text(done)
    assert "hx-get" not in done.content.decode()
    assert "nothing left to send" in text(done)


def test_cancel_asks_to_confirm_then_stops_for_good(
    login, support_sam, incident, people, version, run_jobs
):
    client = login(support_sam)
    page = confirm_launch(client, version)
    with run_jobs(), transaction.atomic():  # the jobs start when this commits
        client.post(launch_url(version), hidden_fields(page))
        campaign = Campaign.objects.get()
        cancel = client.get(curl("campaign-cancel", campaign))
        assert "This cannot be undone" in text(cancel)
        assert "The 12 deliveries still queued will never be sent." in text(cancel)

        unconfirmed = client.post(curl("campaign-cancel", campaign), {})
        assert unconfirmed["Location"] == curl("campaign-cancel", campaign)
        campaign.refresh_from_db()
        assert campaign.status == Campaign.Status.RUNNING

        client.post(curl("campaign-cancel", campaign), {"confirm": "cancel"})

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED and campaign.finished_at
    assert counts(campaign) == {Status.CANCELLED: 12}
    assert mail.outbox == []  # the jobs found it cancelled and sent nothing
    shown = client.get(curl("campaign", campaign))
    assert messages_of(shown) == [
        f"Cancelled campaign #{campaign.pk}: 12 deliveries will never be sent. Messages already "
        "handed to the ESP stay sent. This cannot be undone."
    ]
    assert "Cancel the campaign" not in text(shown) and ">Resume<" not in shown.content.decode()
    again = client.post(curl("campaign-cancel", campaign), {"confirm": "cancel"}, follow=True)
    assert messages_of(again) == [f"Campaign #{campaign.pk} is already cancelled. Nothing changed."]
    assert AuditEntry.objects.filter(action="campaign.cancelled").count() == 1
    tab = text(client.get(url("sending", incident)))
    assert "Cancelled." in tab and "0 of 12" not in tab and "12 of 12 done" in tab


# --- Uncertain deliveries ---------------------------------------------------------------------


def make_uncertain(client, version, run_jobs, settings, n=2) -> tuple[Campaign, list[Delivery]]:
    """A worker claimed `n` deliveries, handed them to the ESP and died; the sweeper finds
    them uncertain (claimed rows never handed over would go back to the queue)."""
    from campaigns.sending.claims import hand_over

    page = confirm_launch(client, version)
    with run_jobs(), transaction.atomic():
        client.post(launch_url(version), hidden_fields(page))
        campaign = Campaign.objects.get()
        crashed = sending.claim(campaign.pk, 0, 10**12, n)
        assert all(map(hand_over, Delivery.objects.filter(pk__in=crashed)))
    later = timezone.now() + timedelta(seconds=settings.SEND_LEASE_SECONDS + 1)
    with run_jobs():
        sending.sweep(now=later)
    return campaign, list(Delivery.objects.filter(pk__in=crashed).order_by("id"))


def test_uncertain_resolution_needs_a_reason_and_the_permission(
    login, client, support_sam, comms_cleo, people, version, run_jobs, settings
):
    client = login(support_sam)
    campaign, (first, second) = make_uncertain(client, version, run_jobs, settings)
    assert len(mail.outbox) == 10 and {first.status, second.status} == {Status.UNCERTAIN}

    tab = text(client.get(url("sending", campaign.incident)))
    assert "2 deliveries may or may not have gone out: someone must decide." in tab
    listing = client.get(curl("campaign-uncertain", campaign))
    said = text(listing)
    assert first.address in said and second.address in said and "may have been sent" in said
    assert listing.content.decode().count('value="resend"') == 2

    resolve = url(
        "delivery-resolve", campaign.incident, campaign_id=campaign.pk, delivery_id=first.pk
    )
    prefix = f"d{first.pk}"
    no_reason = client.post(resolve, {f"{prefix}-decision": "mark_sent", f"{prefix}-reason": " "})
    assert no_reason.status_code == 200
    assert "Say why, for the audit trail." in text(no_reason)
    first.refresh_from_db()
    assert first.status == Status.UNCERTAIN
    assert not AuditEntry.objects.filter(action="delivery.uncertain_resolved").exists()

    client.logout()
    login(comms_cleo)
    assert "Resend" not in text(client.get(curl("campaign-uncertain", campaign)))
    forbidden = client.post(resolve, {f"{prefix}-decision": "mark_sent", f"{prefix}-reason": "x"})
    assert forbidden.status_code == 403
    client.logout()
    login(support_sam)

    marked = client.post(
        resolve,
        {f"{prefix}-decision": "mark_sent", f"{prefix}-reason": "The customer confirmed by phone"},
        follow=True,
    )
    assert messages_of(marked) == [
        f"Delivery #{first.pk} is counted as sent. Your reason is in the audit trail."
    ]
    twice = client.post(
        resolve, {f"{prefix}-decision": "resend", f"{prefix}-reason": "oops"}, follow=True
    )
    assert messages_of(twice) == [
        f"Delivery #{first.pk} was decided already: it is sent now. Nothing changed."
    ]

    other = f"d{second.pk}"
    with run_jobs():
        client.post(
            url(
                "delivery-resolve",
                campaign.incident,
                campaign_id=campaign.pk,
                delivery_id=second.pk,
            ),
            {f"{other}-decision": "resend", f"{other}-reason": "The ESP has no trace of it"},
        )

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (Status.SENT, Status.SENT)
    recipients = outbox_recipients()
    assert recipients[second.address] == 1 and recipients[first.address] == 0
    assert len(mail.outbox) == 11
    decisions = AuditEntry.objects.filter(action="delivery.uncertain_resolved").order_by("seq")
    assert [(e.actor, e.after["decision"]) for e in decisions] == [
        (support_sam, "mark_sent"),
        (support_sam, "resend"),
    ]
    assert "No uncertain deliveries" in text(client.get(curl("campaign-uncertain", campaign)))


# --- The deliveries list ------------------------------------------------------------------------


def test_the_deliveries_list_filters_by_state_searches_by_address_and_pages_by_id(
    login, support_sam, people, version, run_jobs, monkeypatch
):
    from campaigns import views_campaigns

    monkeypatch.setattr(views_campaigns, "PAGE_SIZE", 5)
    services.suppression_add(
        address=people[7].address, reason="complaint", source="manual", by=as_user(support_sam)
    )
    client = login(support_sam)
    with run_jobs():
        client.post(launch_url(version), hidden_fields(confirm_launch(client, version)))
    campaign = Campaign.objects.get()
    deliveries = list(campaign.deliveries.order_by("id"))

    first = client.get(curl("campaign-deliveries", campaign))
    assert [d.pk for d in first.context["deliveries"]] == [d.pk for d in deliveries[:5]]
    after = deliveries[4].pk
    assert f"?after={after}" in first.content.decode()
    second = client.get(curl("campaign-deliveries", campaign), {"after": after})
    assert [d.pk for d in second.context["deliveries"]] == [d.pk for d in deliveries[5:10]]
    back = second.context["page"].prev_before
    assert back == deliveries[5].pk

    suppressed = client.get(curl("campaign-deliveries", campaign), {"status": "suppressed"})
    assert [d.address for d in suppressed.context["deliveries"]] == [people[7].original_address]
    found = client.get(curl("campaign-deliveries", campaign), {"q": "person11@"})
    assert [d.address for d in found.context["deliveries"]] == ["Person11@Example.com"]
    by_code = client.get(
        curl("campaign-deliveries", campaign), {"q": deliveries[2].verification_code.lower()}
    )
    assert [d.pk for d in by_code.context["deliveries"]] == [deliveries[2].pk]
    nothing = client.get(curl("campaign-deliveries", campaign), {"q": "nobody@"})
    assert "No delivery matches these filters." in text(nothing)
    bad = client.get(curl("campaign-deliveries", campaign), {"status": "lost", "after": "x"})
    assert bad.status_code == 200 and len(bad.context["deliveries"]) == 5


# --- Who may do what, and every page's markup -----------------------------------------------------


def test_comms_watches_but_is_told_support_launches(
    login, comms_cleo, incident, segment, people, version
):
    client = login(comms_cleo)
    tab = client.get(url("sending", incident))
    assert "Approved v1: ready to send to 12 people. Waiting for Support to launch it." in text(tab)
    assert "/launch/" not in tab.content.decode()
    assert "Launch…" not in text(
        client.get(url("version", incident, segment_id=segment.pk, number=1))
    )
    assert client.get(launch_url(version)).status_code == 403


def test_auditors_see_every_sending_page_but_every_post_is_refused(
    login, client, support_sam, auditor_abe, incident, people, version, run_jobs, settings
):
    campaign, (uncertain, _) = make_uncertain(login(support_sam), version, run_jobs, settings, n=2)
    client.logout()
    client = login(auditor_abe)
    for page in (
        url("sending", incident),
        curl("campaign", campaign),
        curl("campaign-progress", campaign),
        curl("campaign-uncertain", campaign),
        curl("campaign-deliveries", campaign),
    ):
        response = client.get(page)
        assert response.status_code == 200, page
        markup = response.content.decode()
        assert markup.count('method="post"') <= 1, page  # logging out, nothing else
        for button in (
            "/launch/",
            ">Pause<",
            ">Resume<",
            "Cancel the campaign",
            "Top up",
            "Mark sent",
        ):
            assert button not in markup, (page, button)
    before = (AuditEntry.objects.count(), counts(campaign), len(mail.outbox))

    resolve = url("delivery-resolve", incident, campaign_id=campaign.pk, delivery_id=uncertain.pk)
    posts = [
        (launch_url(version), SETTINGS | {"confirm": "launch"}),
        (curl("campaign-pause", campaign), {"reason": "x"}),
        (curl("campaign-resume", campaign), {}),
        (curl("campaign-cancel", campaign), {"confirm": "cancel"}),
        (curl("campaign-top-up", campaign), {}),
        (resolve, {f"d{uncertain.pk}-decision": "resend", f"d{uncertain.pk}-reason": "x"}),
    ]
    for target, data in posts:
        assert client.post(target, data).status_code == 403, target

    assert (AuditEntry.objects.count(), counts(campaign), len(mail.outbox)) == before


def _nonce(response) -> str:
    return re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)


def test_every_sending_page_renders_without_inline_styles_or_unnonced_scripts(
    login, support_sam, incident, segment, people, version, run_jobs, settings
):
    client = login(support_sam)
    campaign, (uncertain, _) = make_uncertain(client, version, run_jobs, settings)
    resolve = url("delivery-resolve", incident, campaign_id=campaign.pk, delivery_id=uncertain.pk)
    pages = [
        client.get(url("sending", incident)),
        client.get(launch_url(version)),
        client.post(launch_url(version), SETTINGS),  # refused: everyone is in a campaign
        client.post(launch_url(version), SETTINGS | {"send_again": "on"}),  # no reason
        confirm_launch(client, version, send_again="on", resend_reason="A correction"),
        client.get(curl("campaign", campaign)),
        client.get(curl("campaign-progress", campaign)),
        client.get(curl("campaign-cancel", campaign)),
        client.get(curl("campaign-uncertain", campaign)),
        client.post(resolve, {}),  # no decision, no reason
        client.get(curl("campaign-deliveries", campaign), {"status": "sent", "q": "example"}),
        client.get(url("version", incident, segment_id=segment.pk, number=1)),
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
    campaign_page = pages[5].content.decode()
    assert "htmx.min.js" in campaign_page
