"""The public verification page (issue 6, item 7): "genuine" or "not recognised", nothing more.

Rate-limit counters live in the shared cache (Redis when REDIS_URL is set), so
every test looks up codes from client addresses of its own.
"""

import hmac
import re
import uuid

import pytest
from django.test import Client
from django.urls import reverse

from campaigns import verification
from campaigns.models import Delivery
from incidents.models import AffectedPerson
from tests.deliveries import deliver, make_campaign

pytestmark = pytest.mark.django_db
Status = Delivery.Status
COMPANY = "Retailer Example GmbH"


def fresh_ip() -> str:
    """An IPv6 address in a /64 no other test uses."""
    return f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"


@pytest.fixture(autouse=True)
def _company(settings):
    settings.COMPANY_NAME = COMPANY


@pytest.fixture
def campaign(incident):
    return make_campaign(incident)


def look_up(client, code, *, ip=None):
    return client.get(reverse("verify"), {"code": code}, REMOTE_ADDR=ip or fresh_ip())


def page_text(response) -> str:
    """The page without what differs per request or per input: tokens, nonces, the echo."""
    html = response.content.decode()
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    html = re.sub(r'nonce="[^"]*"', "", html)
    return re.sub(r'(<input[^>]*name="code"[^>]*?) value="[^"]*"', r"\1", html)


# --- The answer ----------------------------------------------------------------------------


def test_a_genuine_code_shows_the_company_the_incident_and_the_day_without_personal_data(
    client, campaign, incident
):
    delivery = deliver(campaign, status=Status.DELIVERED, name="annabel")

    response = look_up(client, delivery.verification_code)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Genuine" in html and "Not recognised" not in html
    assert COMPANY in html
    assert incident.title in html and incident.reference in html
    assert "28 November 2026" in html
    for personal in ("annabel", "Annabel", "C-annabel-4711", "example.com"):
        assert personal not in html


def test_an_unknown_code_is_not_recognised_with_the_same_status(client, campaign, incident):
    deliver(campaign, status=Status.SENT)

    response = look_up(client, "ZZZZZZZZZZ")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Not recognised" in html and "Genuine" not in html
    assert incident.title not in html and incident.reference not in html


@pytest.mark.parametrize(
    "status", [Status.QUEUED, Status.CANCELLED, Status.SUPPRESSED, Status.FAILED, Status.SENDING]
)
def test_a_code_never_handed_to_the_esp_is_not_recognised(client, campaign, incident, status):
    delivery = deliver(campaign, status=status)

    response = look_up(client, delivery.verification_code)

    assert response.status_code == 200
    assert "Not recognised" in response.content.decode()
    assert incident.title not in response.content.decode()


@pytest.mark.parametrize(
    "status", [Status.SENT, Status.DEFERRED, Status.BOUNCED, Status.COMPLAINED, Status.UNCERTAIN]
)
def test_a_code_handed_to_the_esp_is_genuine_whatever_happened_next(client, campaign, status):
    delivery = deliver(campaign, status=status)

    response = look_up(client, delivery.verification_code)

    assert "Genuine" in response.content.decode()
    # An uncertain delivery has no sent_at: the campaign's launch day stands in.
    assert "28 November 2026" in response.content.decode()


def test_unknown_malformed_cancelled_and_unsent_codes_get_the_very_same_page(client, campaign):
    cancelled = deliver(campaign, status=Status.CANCELLED, name="cat")
    queued = deliver(campaign, status=Status.QUEUED, name="quinn")
    pages = [
        page_text(look_up(client, code))
        for code in ("ZZZZZZZZZZ", cancelled.verification_code, queued.verification_code, "hello")
    ]
    assert all(page == pages[0] for page in pages)


@pytest.mark.parametrize(
    "typed",
    [
        "1a0b1c0d1e",
        "ia0b-lc0d 1e",
        "IAOB LCOD IE",
        "1A0B–1C0D1E",  # an en dash, as word processors write it
        "  1a0b 1c0d 1e  ",
        "1A0B.1C0D_1E",
    ],
)
def test_codes_match_whatever_the_case_spacing_dashes_or_look_alike_letters(
    client, campaign, typed
):
    deliver(campaign, status=Status.SENT, code="1A0B1C0D1E")

    assert "Genuine" in look_up(client, typed).content.decode()


def test_a_u_is_not_read_as_anything_else(campaign):
    deliver(campaign, status=Status.SENT, code="1A0B1C0DVE")
    assert not verification.verify_code("1A0B1C0DUE").genuine


def test_the_form_needs_its_csrf_token_and_then_finds_the_code(campaign):
    delivery = deliver(campaign, status=Status.SENT)
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR=fresh_ip())
    page = browser.get(reverse("verify"))
    assert page.status_code == 200 and 'name="csrfmiddlewaretoken"' in page.content.decode()

    forged = Client(enforce_csrf_checks=True).post(
        reverse("verify"), {"code": delivery.verification_code}
    )
    assert forged.status_code == 403

    token = browser.cookies["csrftoken"].value
    posted = browser.post(
        reverse("verify"), {"code": delivery.verification_code, "csrfmiddlewaretoken": token}
    )
    assert posted.status_code == 200 and "Genuine" in posted.content.decode()


def test_an_empty_form_asks_for_the_code_and_looks_nothing_up(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.post(reverse("verify"), {"code": "  "}, REMOTE_ADDR=fresh_ip())
    assert response.status_code == 200
    assert "Enter the code from the email." in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()


# --- Same work either way --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["genuine", "unknown", "cancelled", "malformed"])
def test_every_look_up_is_one_indexed_query_and_one_digest_comparison(
    campaign, django_assert_num_queries, monkeypatch, kind
):
    codes = {
        "genuine": deliver(campaign, status=Status.SENT, name="g").verification_code,
        "cancelled": deliver(campaign, status=Status.CANCELLED, name="c").verification_code,
        "unknown": "ZZZZZZZZZZ",
        "malformed": "not a code at all",
    }
    compared = []
    real_compare = hmac.compare_digest
    monkeypatch.setattr(
        verification.hmac, "compare_digest", lambda a, b: compared.append(1) or real_compare(a, b)
    )

    with django_assert_num_queries(1) as captured:
        result = verification.verify_code(codes[kind])

    assert result.genuine is (kind == "genuine")
    assert compared == [1]
    assert "verification_code" in captured.captured_queries[0]["sql"]


# --- The rate limit ------------------------------------------------------------------------------


def test_look_ups_beyond_the_limit_get_a_calm_429_until_the_window_ends(client, campaign, settings):
    settings.VERIFY_RATE_LIMIT = 3
    delivery = deliver(campaign, status=Status.SENT)
    ip = fresh_ip()

    for _ in range(3):
        assert look_up(client, "ZZZZZZZZZZ", ip=ip).status_code == 200
    refused = look_up(client, delivery.verification_code, ip=ip)

    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= settings.VERIFY_RATE_WINDOW_SECONDS
    html = refused.content.decode()
    assert "try again" in html.lower() and "Genuine" not in html
    # Someone else is not held up.
    assert "Genuine" in look_up(client, delivery.verification_code).content.decode()


def test_opening_the_page_without_a_code_is_not_counted(client, settings):
    settings.VERIFY_RATE_LIMIT = 1
    ip = fresh_ip()
    for _ in range(5):
        assert client.get(reverse("verify"), REMOTE_ADDR=ip).status_code == 200
    assert look_up(client, "ZZZZZZZZZZ", ip=ip).status_code == 200


def test_ipv6_clients_are_counted_per_64(client, settings):
    settings.VERIFY_RATE_LIMIT = 2
    prefix = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    assert look_up(client, "ZZZZZZZZZZ", ip=f"{prefix}::1").status_code == 200
    assert look_up(client, "ZZZZZZZZZZ", ip=f"{prefix}:ffff::2").status_code == 200
    assert look_up(client, "ZZZZZZZZZZ", ip=f"{prefix}:1234:5678:9abc:def0").status_code == 429


def test_ipv4_clients_are_counted_per_address_however_written(client, settings):
    settings.VERIFY_RATE_LIMIT = 1
    # 10.x addresses of this test's own (counters may live in a Redis other runs share).
    n = uuid.uuid4().int % 2**23 * 2
    ip, neighbour = (f"10.{m >> 16 & 255}.{m >> 8 & 255}.{m & 255}" for m in (n, n + 1))
    assert look_up(client, "ZZZZZZZZZZ", ip=ip).status_code == 200
    assert look_up(client, "ZZZZZZZZZZ", ip=f"::ffff:{ip}").status_code == 429
    assert look_up(client, "ZZZZZZZZZZ", ip=neighbour).status_code == 200


def test_behind_a_proxy_the_client_is_the_address_the_proxy_saw(client, settings):
    settings.VERIFY_RATE_LIMIT = 1
    settings.AXES_IPWARE_PROXY_COUNT = 1
    proxy, client_ip = fresh_ip(), fresh_ip()

    def via_proxy(claimed):
        return client.get(
            reverse("verify"),
            {"code": "ZZZZZZZZZZ"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"{claimed}, {client_ip}",
        )

    assert via_proxy(fresh_ip()).status_code == 200
    # A new address made up at the left of the header changes nothing.
    assert via_proxy(fresh_ip()).status_code == 429
    # Another customer behind the same proxy is counted on their own.
    assert look_up(client, "ZZZZZZZZZZ", ip=proxy).status_code == 200


# --- A public page, kept strict -------------------------------------------------------------------


def test_the_page_is_public_uncached_unindexed_and_keeps_the_strict_csp(client):
    response = client.get(reverse("verify"), REMOTE_ADDR=fresh_ip())

    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    assert response.headers["X-Robots-Tag"] == "noindex"
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = response.content.decode()
    assert "never ask" in html and COMPANY in html
    # A customer's page: none of the staff tool's navigation.
    assert "Log out" not in html and "API docs" not in html and 'class="brand"' not in html


def test_the_apology_prints_the_verification_page(incident, settings):
    from campaigns.rendering import render_context

    settings.VERIFICATION_URL = "https://retailer.example/verify/"
    person = AffectedPerson(incident=incident, address="a@example.com", metadata={})
    context = render_context(person=person, incident=incident, verification_code="1A0B1C0D1E")
    assert context["verification_url"] == "https://retailer.example/verify/"


# --- End to end ---------------------------------------------------------------------------------


def test_the_code_in_a_sent_apology_is_genuine_on_the_page(
    transactional_audit, settings, client, incident, support_sam, comms_cleo
):
    """Launched, sent through anymail's Postmark backend to the stub, then checked."""
    from campaigns import services
    from incidents.actors import Actor
    from incidents.services.audience import default_segment
    from tests.esp_stub import PostmarkStub
    from tests.factories import freeze_people

    settings.SEND_RATE_LIMIT = 1000
    settings.SEND_REDIS_PREFIX = f"amends-test:{uuid.uuid4()}"
    settings.VERIFICATION_URL = "https://retailer.example/verify/"
    freeze_people(incident, support_sam, [("m1", "Ann@Example.com", "en", {"first_name": "Ann"})])
    segment = default_segment(incident)
    version = services.version_create(
        by=Actor.for_user(support_sam),
        segment=segment,
        sender_address="care@retailer.example",
        fallback_locale="en",
        content={
            "en": {
                "subject": "We sent you an email by mistake",
                "text": "Check this email at {{ verification_url }} with the code "
                "{{ verification_code }}. Contact us at care@retailer.example.",
                "html": "",
            }
        },
    )
    services.version_approve(version=version, by=Actor.for_user(comms_cleo))
    stub = PostmarkStub().start()
    settings.MAILERS = {"default": stub.mailer()}
    try:
        services.campaign_launch(version=version, segment=segment, by=Actor.for_user(support_sam))
        if settings.REDIS_URL:
            import django_rq
            from rq import SimpleWorker

            django_rq.get_worker("send", worker_class=SimpleWorker).work(burst=True)
    finally:
        stub.stop()

    (request,) = stub.requests
    text = request.payload["TextBody"]
    assert "https://retailer.example/verify/" in text
    code = re.search(r"with the code (\w+)\.", text).group(1)
    assert Delivery.objects.get(verification_code=code).status == Status.SENT
    typed = f"{code[:5].lower()} - {code[5:].lower()}"
    response = look_up(client, typed)
    assert "Genuine" in response.content.decode()
    assert incident.title in response.content.decode()
    assert "Ann" not in response.content.decode()
