"""The demo scenario: the baby-registry mis-send that Amends exists for.

Everything goes through the real services, so the demo's audit trail is the one
production would write: the send log arrives as an API batch, the audience is
frozen with the template and window filters, the list is split into segments,
and the apology is drafted by Support, rejected once by Comms (it offered a
discount to people who may be grieving), redrafted and approved by two people
(the incident is SEV1). The registry holders' correction waits for approval.
The approved apology is then sent to everyone else through the sandbox: once
the seed commits, the embedded mode sends it in-process, and the sandbox's
simulated ESP reports deliveries, a few bounces and deferrals
(campaigns/tracking/sandbox.py), so the incident shows who was reached.

Each step checks whether it already happened, so running it again adds nothing
and a database seeded by an older demo is completed, not duplicated.
"""

import html
import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from campaigns import services as campaign_services
from campaigns.mail import SandboxBackend
from campaigns.models import Campaign, Message, Suppression
from incidents import services
from incidents.actors import Actor
from incidents.filters import AudienceFilter
from incidents.models import Incident, Segment, SendLogEntry
from incidents.roles import ADMIN, AUDITOR, COMMS, SUPPORT

DEMO_PASSWORD = "amends-demo"
DEMO_USERS = {
    "support_sam": SUPPORT,
    "comms_cleo": COMMS,
    "auditor_abe": AUDITOR,
    "admin_ada": ADMIN,
}
DEMO_TITLE = "Baby registry gift notice sent to customers without a registry"
REGISTRY_TEMPLATE = "registry-gift-purchased"
REGISTRY_SEGMENT = "Has a registry"
MESSAGE_ID_PREFIX = "<demo-"

# --- The send log ----------------------------------------------------------------------

_EN_NAMES = [
    ("Olivia", "Smith"), ("Amelia", "Jones"), ("Isla", "Taylor"), ("Ava", "Brown"),
    ("Mia", "Williams"), ("Grace", "Wilson"), ("Sophie", "Evans"), ("Emily", "Thomas"),
    ("Chloe", "Roberts"), ("Hannah", "Walker"), ("Laura", "Wright"), ("Rachel", "Hughes"),
    ("James", "Green"), ("Daniel", "Hall"), ("Tom", "Wood"), ("Priya", "Patel"),
    ("Aisha", "Khan"), ("Niamh", "Murphy"), ("Siobhan", "Kelly"), ("Zoe", "Clarke"),
]  # fmt: skip
_DE_NAMES = [
    ("Anna", "Müller"), ("Lena", "Schmidt"), ("Jana", "Schneider"), ("Sophie", "Fischer"),
    ("Marie", "Weber"), ("Lea", "Meyer"), ("Katrin", "Wagner"), ("Julia", "Becker"),
    ("Sabine", "Schulz"), ("Jürgen", "Hoffmann"), ("Jörg", "Koch"), ("Elif", "Yılmaz"),
    ("Nina", "Richter"), ("Mareike", "Klein"), ("Tobias", "Wolf"), ("Selin", "Schröder"),
]  # fmt: skip
_ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ı": "i"})

PEOPLE = 280  # who received the registry email in the window
DOUBLES = 20  # of them, people who received it twice (the retry), once in other letter case


def _person(i: int) -> dict:
    """Person i of the demo, the same on every run (no randomness: every run tells one story)."""
    german = i % 5 in (1, 3)
    names = _DE_NAMES if german else _EN_NAMES
    first, last = names[(i * 7) % len(names)]
    domain = (
        ("example.net", "mail.example.net")[i % 2]
        if german
        else ("example.com", "example.org")[i % 2]
    )
    local = f"{first}.{last}".lower().translate(_ASCII)
    return {
        "recipient": f"{first}.{last}{i}@{domain}".translate(_ASCII),
        "lower": f"{local}{i}@{domain}",
        "customer_id": f"C{10_000 + i}",
        "locale": "de" if german else "en",
        "metadata": {"first_name": first, "has_registry": i % 7 == 3},
    }


def _sendlog_rows(incident: Incident) -> list[dict]:
    """~300 registry emails over the two-hour window, a few legitimate ones the day before,
    and the other templates that went out at the same time."""
    start, window = incident.sent_from, incident.sent_until - incident.sent_from
    rows = []

    def add(kind: str, n: int, person: dict, at, template: str = REGISTRY_TEMPLATE, **extra):
        rows.append(
            {
                "message_id": f"{MESSAGE_ID_PREFIX}{kind}-{n:04d}@mta.postmark.example>",
                "recipient": extra.pop("recipient", person["recipient"]),
                "customer_id": person["customer_id"],
                "template": template,
                "tags": ["registry", "notification"] if template == REGISTRY_TEMPLATE else [],
                "sent_at": at.isoformat(),
                "locale": person["locale"],
                "metadata": person["metadata"],
            }
        )

    step = window / (PEOPLE + 5)
    for i in range(PEOPLE):
        add("registry", i, _person(i), start + step * i)
    # The job's retry: the same people again, minutes later, their address in lower case.
    for n, i in enumerate(range(0, PEOPLE, PEOPLE // DOUBLES)):
        person = _person(i)
        add("retry", n, person, start + step * i + timedelta(minutes=4), recipient=person["lower"])
    # Before the fault: real gifts, told to people who do have a registry. Not affected.
    for n in range(8):
        person = _person(PEOPLE + n)
        person["metadata"] = person["metadata"] | {"has_registry": True}
        add("earlier", n, person, start - timedelta(hours=22) + timedelta(minutes=9 * n))
    # The same hours' other emails: shipping notices and the newsletter. Not affected.
    for n in range(30):
        add("shipped", n, _person(n * 9), start + step * n * 9, template="order-shipped")
    for n in range(20):
        add("newsletter", n, _person(n * 13 + 1), start + step * n, template="weekly-newsletter")
    return rows


# --- The apologies ---------------------------------------------------------------------

_CARE = "care@retailer.example"
_DPO = "privacy@retailer.example"

EVERYONE_EN_SUBJECT = "We sent you an email about a baby registry by mistake"
EVERYONE_EN = """\
{% if first_name %}
Dear {{ first_name }},
{% else %}
Hello,
{% endif %}

On {{ original_send_date }} we sent you an email with the subject “Someone just bought a gift \
from your baby registry!”. That email was sent in error. You do not have a baby registry with \
us, and no one bought anything for you. We are very sorry. We know that an email like this can \
be upsetting, especially at a difficult time.

What happened
A fault in our registry notification system sent the email to customers who do not have a \
registry. It used your first name and email address from your customer account. It contained \
no passwords or payment details, and we did not share your details with anyone else.

What this means for you
You do not need to do anything. The email really came from us and was not a phishing attempt, \
but it should never have reached you. Because of its subject line, people who share your inbox \
or see your phone's notifications might have seen it.

What we have done
We stopped the notifications the same day, fixed the fault, and added a check so that registry \
emails only go to customers who have created a registry.

If you have questions, or would like to talk to someone, please contact our care team at \
care@retailer.example and mention {{ incident_reference }}. You can reach our data protection \
officer at privacy@retailer.example.

To check that this email really is from us, type {{ verification_url }} into your browser \
yourself and enter the code {{ verification_code }}. We will never ask you for a password or \
payment details by email.

With our sincere apologies,
The {{ company_name }} team"""

EVERYONE_DE_SUBJECT = "Unsere E-Mail zu einer Babyliste war ein Fehler. Es tut uns leid."
EVERYONE_DE = """\
{% if first_name %}
Guten Tag {{ first_name }},
{% else %}
Guten Tag,
{% endif %}

am {{ original_send_date }} haben wir Ihnen eine E-Mail geschickt, nach der jemand ein Geschenk \
von Ihrer Babyliste gekauft habe. Diese E-Mail war ein Fehler: Sie haben bei uns keine \
Babyliste, und niemand hat etwas für Sie gekauft. Das tut uns sehr leid. Wir wissen, dass eine \
solche Nachricht belastend sein kann, gerade in einer schweren Zeit.

Was ist passiert?
Ein Fehler in unserem System für Benachrichtigungen zu Babylisten hat die E-Mail an Kundinnen \
und Kunden ohne Babyliste geschickt. Verwendet wurden dabei Ihr Vorname und Ihre \
E-Mail-Adresse aus Ihrem Kundenkonto. Die E-Mail enthielt keine Passwörter und keine \
Zahlungsdaten, und wir haben Ihre Daten an niemanden weitergegeben.

Was bedeutet das für Sie?
Sie müssen nichts tun. Die E-Mail kam tatsächlich von uns und war kein Betrugsversuch, sie \
hätte Sie aber nie erreichen dürfen. Wegen ihres Betreffs könnten Personen, die Ihr Postfach \
mitnutzen oder die Benachrichtigungen auf Ihrem Telefon sehen, sie bemerkt haben.

Was haben wir unternommen?
Wir haben die Benachrichtigungen noch am selben Tag gestoppt, den Fehler behoben und eine \
zusätzliche Prüfung eingeführt: E-Mails zu einer Babyliste gehen nur noch an Kundinnen und \
Kunden, die eine Babyliste angelegt haben.

Wenn Sie Fragen haben oder mit jemandem sprechen möchten, wenden Sie sich bitte an unser \
Kundenteam unter care@retailer.example und nennen Sie den Vorgang {{ incident_reference }}. \
Unsere Datenschutzbeauftragte erreichen Sie unter privacy@retailer.example.

Ob diese E-Mail wirklich von uns kommt, können Sie prüfen: Geben Sie {{ verification_url }} \
selbst in Ihren Browser ein und dort den Code {{ verification_code }}. Wir fragen Sie per E-Mail \
nie nach einem Passwort oder nach Zahlungsdaten.

Mit aufrichtigem Bedauern
Ihr Team von {{ company_name }}"""

# The first draft, which Comms sends back: an offer reads as selling to people who may be grieving.
EVERYONE_FIRST_DRAFT = {
    "en": (
        "We're sorry! Here's 15% off your next order",
        EVERYONE_EN.replace(
            "With our sincere apologies,",
            "As a small apology, here is 15% off your next order with the code SORRY15.\n\n"
            "With our sincere apologies,",
        ),
    ),
    "de": (
        "Entschuldigung! 15 % Rabatt auf Ihre nächste Bestellung",
        EVERYONE_DE.replace(
            "Mit aufrichtigem Bedauern",
            "Als kleine Entschuldigung erhalten Sie 15 % Rabatt auf Ihre nächste Bestellung "
            "mit dem Code SORRY15.\n\nMit aufrichtigem Bedauern",
        ),
    ),
}
REJECTION = (
    "Please take out the discount and the exclamation mark. Many of these customers may be "
    "grieving; an offer reads as if we are selling to them. Keep to the apology, what happened, "
    "what we did and who they can talk to."
)

REGISTRY_EN_SUBJECT = "A correction about your baby registry"
REGISTRY_EN = """\
{% if first_name %}
Dear {{ first_name }},
{% else %}
Hello,
{% endif %}

On {{ original_send_date }} we sent you an email saying that someone had bought a gift from \
your baby registry. That email was sent in error: no gift was bought, and your registry has not \
changed. We are sorry for the confusion, and for any disappointment it caused.

What happened
A fault in our registry notification system sent this email to many customers at once, whether \
or not a gift had been bought. It used your first name and email address from your customer \
account. It contained no passwords or payment details, and we did not share your details with \
anyone else.

What this means for you
You do not need to do anything. Your registry and any gifts already bought are exactly as they \
were. Because of its subject line, people who share your inbox or see your phone's \
notifications might have seen the email.

What we have done
We stopped the notifications the same day, fixed the fault, and added a check so that a gift \
email is only sent when a gift has really been bought.

If you have any questions, please contact our care team at care@retailer.example and mention \
{{ incident_reference }}. You can reach our data protection officer at privacy@retailer.example.

With our apologies,
The {{ company_name }} team"""

REGISTRY_DE_SUBJECT = "Eine Korrektur zu Ihrer Babyliste"
REGISTRY_DE = """\
{% if first_name %}
Guten Tag {{ first_name }},
{% else %}
Guten Tag,
{% endif %}

am {{ original_send_date }} haben wir Ihnen geschrieben, jemand habe ein Geschenk von Ihrer \
Babyliste gekauft. Diese E-Mail war ein Fehler: Es wurde kein Geschenk gekauft, und Ihre \
Babyliste ist unverändert. Die Verwirrung und jede Enttäuschung tun uns leid.

Was ist passiert?
Ein Fehler in unserem System für Benachrichtigungen zu Babylisten hat diese E-Mail an viele \
Kundinnen und Kunden zugleich geschickt, ob ein Geschenk gekauft wurde oder nicht. Verwendet \
wurden dabei Ihr Vorname und Ihre E-Mail-Adresse aus Ihrem Kundenkonto. Die E-Mail enthielt \
keine Passwörter und keine Zahlungsdaten, und wir haben Ihre Daten an niemanden weitergegeben.

Was bedeutet das für Sie?
Sie müssen nichts tun. Ihre Babyliste und bereits gekaufte Geschenke sind unverändert. Wegen \
ihres Betreffs könnten Personen, die Ihr Postfach mitnutzen oder die Benachrichtigungen auf \
Ihrem Telefon sehen, die E-Mail bemerkt haben.

Was haben wir unternommen?
Wir haben die Benachrichtigungen noch am selben Tag gestoppt, den Fehler behoben und eine \
zusätzliche Prüfung eingeführt: Eine E-Mail zu einem Geschenk geht nur noch hinaus, wenn \
wirklich ein Geschenk gekauft wurde.

Wenn Sie Fragen haben, wenden Sie sich bitte an unser Kundenteam unter care@retailer.example \
und nennen Sie den Vorgang {{ incident_reference }}. Unsere Datenschutzbeauftragte erreichen Sie \
unter privacy@retailer.example.

Mit herzlichen Grüßen und der Bitte um Entschuldigung
Ihr Team von {{ company_name }}"""

_HEADINGS = {
    "What happened",
    "What this means for you",
    "What we have done",
    "Was ist passiert?",
    "Was bedeutet das für Sie?",
    "Was haben wir unternommen?",
}
_TAG_LINE = re.compile(r"\n?(\{%[^%]*%\})\n?")
_EMAIL = re.compile(r"\b(care|privacy)@retailer\.example\b")


def _html(text: str) -> str:
    """The HTML part of a demo text: headings, paragraphs and mailto links."""
    parts = []
    for block in text.split("\n\n"):
        heading, _, rest = block.partition("\n")
        if heading in _HEADINGS:
            parts.append(f"<h3>{html.escape(heading)}</h3>")
            block = rest
        block = _TAG_LINE.sub(r"\1", block)  # a tag on its own line leaves no <br>
        body = _EMAIL.sub(r'<a href="mailto:\g<0>">\g<0></a>', html.escape(block, quote=False))
        parts.append(f"<p>{body.replace(chr(10), '<br>')}</p>")
    return "\n".join(parts)


def _content(variants: dict[str, tuple[str, str]]) -> dict:
    return {
        locale: {"subject": subject, "text": text, "html": _html(text)}
        for locale, (subject, text) in variants.items()
    }


def _sender() -> dict:
    return {"sender_name": "Customer Care", "sender_address": _CARE, "fallback_locale": "en"}


# --- Seeding ---------------------------------------------------------------------------


def _users(setup: Actor) -> dict:
    User = get_user_model()
    users, encoded = {}, None
    for username, role in DEMO_USERS.items():
        user = User.objects.filter(username=username).first()
        if user is None:
            user = services.user_create_with_role(
                username=username,
                email=f"{username}@retailer.example",
                password=None,
                role=role,
                by=setup,
            )
            # Hashed once for all four: the hasher is slow on purpose (most of the demo's
            # time), and the demo password is published anyway.
            validate_password(DEMO_PASSWORD, user)
            encoded = encoded or make_password(DEMO_PASSWORD)
            user.password = encoded
            user.save(update_fields=["password"])
        users[username] = user
    return users


def _open_incident(sam: Actor) -> Incident:
    now = timezone.now()
    incident = services.incident_open(
        by=sam,
        title=DEMO_TITLE,
        summary=(
            "The registry service emailed 'Someone just bought a gift from your baby registry!' "
            "to customers who never created a registry. Some had recently lost a pregnancy; "
            "many thought the email was phishing. Every recipient must hear from us, with care."
        ),
        original_template=REGISTRY_TEMPLATE,
        original_subject="Someone just bought a gift from your baby registry!",
        sent_from=now - timedelta(hours=20),
        sent_until=now - timedelta(hours=18),
        esp="Postmark",
        severity=Incident.Severity.SEV1,
        personal_data_exposed=True,
        became_aware_at=now - timedelta(hours=16),
    )
    services.incident_add_note(
        incident=incident,
        body="Registry notification job paused. Send log export requested from the ESP.",
        by=sam,
    )
    services.incident_transition(
        incident=incident,
        to_status=Incident.Status.INVESTIGATING,
        by=sam,
        note="Finding exactly who received it.",
    )
    return incident


def _find_audience(incident: Incident, sam: Actor) -> None:
    if not SendLogEntry.objects.filter(message_id__startswith=MESSAGE_ID_PREFIX).exists():
        services.sendlog_ingest_rows(rows=_sendlog_rows(incident), source="api", by=sam)
    if not incident.audience_queries.exists():
        query = services.audience_freeze(
            incident=incident,
            filters=AudienceFilter.from_dict(
                {
                    "template": REGISTRY_TEMPLATE,
                    "sent_from": incident.sent_from.isoformat(),
                    "sent_until": incident.sent_until.isoformat(),
                }
            ),
            by=sam,
        )
        services.incident_add_note(
            incident=incident,
            body=(
                f"Audience frozen: {query.message_count} registry emails in the window reached "
                f"{query.people_count} people. Customers who do have a registry get their own "
                "message: they were told about a gift no one bought."
            ),
            by=sam,
        )
    if not Segment.objects.filter(incident=incident, name=REGISTRY_SEGMENT).exists():
        services.segment_save(
            incident=incident,
            name=REGISTRY_SEGMENT,
            rules=[{"field": "metadata.has_registry", "op": "eq", "value": True}],
            by=sam,
        )
    # Two people the ESP cannot or may not email: they stay on the list, flagged.
    for i, reason, note in (
        (5, Suppression.Reason.HARD_BOUNCE, "Bounced on the registry email: mailbox unknown."),
        (11, Suppression.Reason.DO_NOT_CONTACT, "Asked by phone not to be emailed again."),
    ):
        campaign_services.suppression_add(
            address=_person(i)["recipient"],
            reason=reason,
            source=Suppression.Source.MANUAL,
            note=note,
            by=sam,
        )


def _apologies(incident: Incident, users: dict) -> None:
    sam, cleo, ada = (
        Actor.for_user(users[name]) for name in ("support_sam", "comms_cleo", "admin_ada")
    )
    everyone = incident.segments.get(is_default=True)
    if not Message.objects.filter(segment=everyone).exists():
        first = campaign_services.version_create(
            by=sam,
            segment=everyone,
            based_on=0,
            content=_content(EVERYONE_FIRST_DRAFT),
            **_sender(),
        )
        campaign_services.approval_request(version=first, by=sam)
        campaign_services.version_reject(version=first, by=cleo, comment=REJECTION)
        final = campaign_services.version_create(
            by=sam,
            message=first.message,
            based_on=first.number,
            content=_content(
                {
                    "en": (EVERYONE_EN_SUBJECT, EVERYONE_EN),
                    "de": (EVERYONE_DE_SUBJECT, EVERYONE_DE),
                }
            ),
            **_sender(),
        )
        campaign_services.approval_request(version=final, by=sam)
        campaign_services.version_approve(
            version=final, by=cleo, comment="Kind, clear, and it says who to talk to."
        )
        # SEV1 needs a second pair of eyes (MESSAGE_APPROVALS_REQUIRED).
        campaign_services.version_approve(version=final, by=ada, comment="Approved for SEV1.")
    registry = incident.segments.get(name=REGISTRY_SEGMENT)
    if not Message.objects.filter(segment=registry).exists():
        draft = campaign_services.version_create(
            by=sam,
            segment=registry,
            based_on=0,
            content=_content(
                {
                    "en": (REGISTRY_EN_SUBJECT, REGISTRY_EN),
                    "de": (REGISTRY_DE_SUBJECT, REGISTRY_DE),
                }
            ),
            **_sender(),
        )
        campaign_services.approval_request(version=draft, by=sam)


def _sandboxed() -> bool:
    """Only the sandbox may "send" the demo: a real mailer would email the demo addresses."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    backend = settings.MAILERS.get("default", {}).get("BACKEND", "")
    return issubclass(import_string(backend), SandboxBackend) if backend else False


def _send(incident: Incident, users: dict) -> Campaign | None:
    """Launch the approved apology to everyone else; it is sent once the seed commits."""
    everyone = incident.segments.get(is_default=True)
    if Campaign.objects.filter(segment=everyone).exists() or not _sandboxed():
        return None
    sam = Actor.for_user(users["support_sam"])
    version = Message.objects.get(segment=everyone).versions.order_by("-number").first()
    if Incident.objects.get(pk=incident.pk).status == Incident.Status.INVESTIGATING:
        services.incident_transition(
            incident=incident,
            to_status=Incident.Status.CONTACTING,
            by=sam,
            note="The apology is approved; sending it to everyone without a registry.",
        )
    return campaign_services.campaign_launch(
        version=version, segment=everyone, by=sam, rate_limit=500
    )


@transaction.atomic
def seed_demo() -> Incident:
    """Create the demo users, incident, send log, audience and apologies, and send the approved
    apology (through the sandbox, after the commit). Safe to run again."""
    users = _users(Actor.system("demo"))
    sam = Actor.for_user(users["support_sam"])
    incident = Incident.objects.filter(title=DEMO_TITLE).first() or _open_incident(sam)
    _find_audience(incident, sam)
    _apologies(incident, users)
    _send(incident, users)
    return incident
