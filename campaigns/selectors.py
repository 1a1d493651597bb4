"""Reads for the campaigns app: suppressions, messages, versions, diffs, warnings, approval state."""

import difflib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet
from django.utils import timezone

from campaigns.models import (
    ACCEPTED,
    PENDING,
    Approval,
    Campaign,
    Delivery,
    Message,
    MessageVersion,
    Suppression,
)
from campaigns.rendering import PARTS, RenderError, choose_locale, normalise_locale, render_version
from campaigns.sanitize import links_in
from incidents.models import AffectedPerson, Incident, Segment


def suppression_list(*, search: str = "", reason: str = "") -> QuerySet[Suppression]:
    qs = Suppression.objects.select_related("created_by")
    if search:
        qs = qs.filter(address__contains=search.strip().lower())
    if reason:
        qs = qs.filter(reason=reason)
    return qs


# --- Messages and versions ----------------------------------------------------------


def message_list(*, incident: Incident) -> QuerySet[Message]:
    """The incident's messages, one per segment that has one, in segment order."""
    return Message.objects.filter(incident=incident).select_related("segment")


def message_for_segment(*, segment: Segment) -> Message | None:
    return Message.objects.filter(segment=segment).first()


def version_list(*, message: Message) -> QuerySet[MessageVersion]:
    """Every version, newest first, with its author and how many decisions it has."""
    return (
        message.versions.select_related("author")
        .annotate(decision_count=Count("approvals"))
        .order_by("-number")
    )


def version_latest(*, message: Message) -> MessageVersion | None:
    return message.versions.select_related("author").order_by("-number").first()


def version_get(*, message: Message, number: int) -> MessageVersion:
    """Raises MessageVersion.DoesNotExist for an unknown number."""
    return message.versions.select_related("author", "message__incident").get(number=number)


def chain_authors(version: MessageVersion) -> dict[int, list[int]]:
    """Who wrote this version or an earlier one: {user id: [version numbers]}."""
    authors: dict[int, list[int]] = {}
    rows = (
        MessageVersion.objects.filter(message_id=version.message_id, number__lte=version.number)
        .order_by("number")
        .values_list("author_id", "number")
    )
    for author_id, number in rows:
        authors.setdefault(author_id, []).append(number)
    return authors


@dataclass(frozen=True)
class FieldDiff:
    """How one field changed between two versions. `locale` is "" for sender settings."""

    locale: str
    field: str
    lines: list[str]  # a unified diff, without line endings


def version_diff(a: MessageVersion, b: MessageVersion) -> list[FieldDiff]:
    """What changed from `a` to `b`, field by field (difflib unified diff).

    Sender settings first, then each locale's subject, text and HTML; fields that
    did not change are left out. A locale only one version has diffs against "".
    """
    if a.message_id != b.message_id:
        raise ValueError("Only versions of the same message can be compared.")

    def diff(old: str, new: str, label: str) -> list[str]:
        return list(
            difflib.unified_diff(
                old.splitlines(),
                new.splitlines(),
                fromfile=f"version {a.number}: {label}",
                tofile=f"version {b.number}: {label}",
                lineterm="",
            )
        )

    diffs = []
    for name in ("sender_name", "sender_address", "reply_to", "fallback_locale"):
        old, new = getattr(a, name), getattr(b, name)
        if old != new:
            diffs.append(FieldDiff("", name, diff(old, new, name)))
    for locale in sorted(set(a.content) | set(b.content)):
        for part in PARTS:
            old = a.content.get(locale, {}).get(part, "")
            new = b.content.get(locale, {}).get(part, "")
            if old != new:
                diffs.append(FieldDiff(locale, part, diff(old, new, f"{locale} {part}")))
    return diffs


def affected_sample(
    *, segment: Segment, count: int = 5, locale: str | None = None
) -> list[AffectedPerson]:
    """Up to `count` random people of the segment (optionally of one locale), for a preview.

    Picks random ids within the id range instead of ORDER BY random(), which
    would sort the whole segment.
    """
    people = AffectedPerson.objects.filter(segment=segment, removed_at__isnull=True)
    if locale is not None:
        people = people.filter(locale=locale)
    bounds = people.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return []
    picked: dict[int, AffectedPerson] = {}
    for _ in range(count * 4):
        if len(picked) >= count:
            break
        pivot = random.randint(bounds["low"], bounds["high"])
        person = people.filter(id__gte=pivot).order_by("id").first()
        if person is not None:
            picked.setdefault(person.pk, person)
    return list(picked.values())


# --- Approval state ---------------------------------------------------------------------


def approvals_required(incident: Incident) -> int:
    """Approvals a version needs, from MESSAGE_APPROVALS_REQUIRED by severity; never below 1."""
    table = settings.MESSAGE_APPROVALS_REQUIRED
    return max(1, int(table.get(incident.severity, table.get("default", 1))))


@dataclass(frozen=True)
class Decision:
    approver: str
    decision: str
    comment: str
    at: datetime
    counts: bool  # an approval that counts: its hash matches and its approver wrote none of it


@dataclass(frozen=True)
class ApprovalState:
    """Where a version stands. Sending needs `approved`; nothing else decides it."""

    number: int
    needed: int
    have: int  # approvals that count
    rejected: bool
    content_intact: bool  # the content still hashes to the hash it was saved with
    is_latest: bool
    decisions: list[Decision] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.content_intact and not self.rejected and self.have >= self.needed

    @property
    def missing(self) -> int:
        return max(0, self.needed - self.have)


def version_approval_state(version: MessageVersion) -> ApprovalState:
    """Recompute, from the database, whether `version` is approved.

    The content hash is recomputed from the stored content now, not trusted from
    the row: an approval counts only if it bound exactly that hash, its approver
    wrote no version up to this one, and no one rejected the version.
    """
    fresh = MessageVersion.objects.select_related("message__incident").get(pk=version.pk)
    actual = fresh.compute_hash()
    intact = actual == fresh.content_hash
    authors = chain_authors(fresh)
    decisions, have, rejected = [], 0, False
    for approval in fresh.approvals.select_related("approver").order_by("created_at", "id"):
        counts = (
            approval.decision == Approval.Decision.APPROVED
            and intact
            and approval.content_hash == actual
            and approval.approver_id not in authors
        )
        have += counts
        rejected = rejected or approval.decision == Approval.Decision.REJECTED
        decisions.append(
            Decision(
                approver=approval.approver.get_username(),
                decision=approval.decision,
                comment=approval.comment,
                at=approval.created_at,
                counts=counts,
            )
        )
    return ApprovalState(
        number=fresh.number,
        needed=approvals_required(fresh.message.incident),
        have=have,
        rejected=rejected,
        content_intact=intact,
        is_latest=fresh.number == fresh.message.version_count,
        decisions=decisions,
    )


def version_is_approved(version: MessageVersion) -> bool:
    """True only when enough approvals bind the hash the version's content has now."""
    return version_approval_state(version).approved


# --- Warnings ------------------------------------------------------------------------------

SUBJECT_WARN_CHARS = 78


def _keywords(*words: str) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")", re.IGNORECASE)


# GDPR Art. 34(2): a notice to the people affected describes, in clear language,
# a contact point, the likely consequences and the measures taken. We cannot
# understand the text, so we look for words that usually carry each part, in
# English and German. A hit does not prove the part is there; a miss is worth a look.
ART34_CHECKS = {
    "gdpr_contact_point_missing": (
        "a contact point, someone to write to or call",
        _keywords(
            "contact us",
            "contact our",
            "get in touch",
            "reach us",
            "reply to this",
            "write to us",
            "call us",
            "data protection officer",
            "privacy team",
            "dpo",
            "kontakt",
            "erreichen sie uns",
            "wenden sie sich",
            "schreiben sie uns",
            "rufen sie uns an",
            "antworten sie auf diese",
            "datenschutzbeauftragte",
        ),
    ),
    "gdpr_consequences_missing": (
        "the likely consequences for the reader",
        _keywords(
            "consequence",
            "this means",
            "may mean",
            "might",
            "could",
            "risk",
            "likely",
            "impact",
            "affect",
            "folge",
            "auswirkung",
            "bedeutet",
            "könnte",
            "möglicherweise",
            "risiko",
            "wahrscheinlich",
            "betrifft",
        ),
    ),
    "gdpr_measures_missing": (
        "the measures taken",
        _keywords(
            "we have",
            "we've",
            "measure",
            "steps",
            "stopped",
            "fixed",
            "paused",
            "prevent",
            "we will",
            "maßnahme",
            "massnahme",
            "wir haben",
            "gestoppt",
            "behoben",
            "verhindern",
            "angehalten",
            "schritte",
        ),
    ),
}
_ADDRESS_OR_PHONE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+|\+?\d[\d ()/-]{6,}\d")


def _people_by_locale(segment: Segment) -> Counter:
    rows = (
        AffectedPerson.objects.filter(segment=segment, removed_at__isnull=True)
        .values_list("locale")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: Counter = Counter()
    for locale, n in rows:
        counts[normalise_locale(locale)] += n
    return counts


def version_warnings(*, version: MessageVersion, segment: Segment | None = None) -> list[dict]:
    """What a reviewer should look at before approving. Each: {code, locale, message}.

    Codes: locale_missing, subject_too_long, link_not_https, text_missing,
    render_failed, and, when the incident exposed personal data,
    gdpr_contact_point_missing, gdpr_consequences_missing, gdpr_measures_missing.
    Warnings never block; they are for people to judge.
    """
    segment = segment or version.message.segment
    incident = version.message.incident
    warnings: list[dict] = []

    def warn(code: str, locale: str, message: str) -> None:
        warnings.append({"code": code, "locale": locale, "message": message})

    for locale, n in sorted(_people_by_locale(segment).items()):
        chosen, fell_back = choose_locale(version.content, locale, version.fallback_locale)
        if fell_back:
            people = "person" if n == 1 else "people"
            have = "has" if n == 1 else "have"
            warn(
                "locale_missing",
                locale,
                f"{n:,} {people} in “{segment.name}” {have} the locale “{locale}”, which has no "
                f"variant; they get the “{chosen}” version.",
            )
    for locale in version.locales:
        try:
            rendered = render_version(version=version, locale=locale)
        except RenderError as exc:
            warn("render_failed", locale, " ".join(exc.messages))
            continue
        if len(rendered.subject) > SUBJECT_WARN_CHARS:
            warn(
                "subject_too_long",
                locale,
                f"The subject has {len(rendered.subject)} characters; many mail apps cut it "
                f"after about {SUBJECT_WARN_CHARS}.",
            )
        text = "" if rendered.text_derived else rendered.text
        insecure = sorted(
            {
                url
                for url in links_in(html=rendered.html, text=text)
                if not url.lower().startswith(("https://", "mailto:", "tel:"))
            }
        )
        if insecure:
            warn(
                "link_not_https",
                locale,
                f"{'This link is' if len(insecure) == 1 else 'These links are'} not https: "
                f"{', '.join(insecure[:5])}.",
            )
        if rendered.text_derived:
            warn(
                "text_missing",
                locale,
                "There is no plain text; it is made from the HTML. Check that it reads well.",
            )
        if incident.personal_data_exposed:
            words = f"{rendered.subject}\n{rendered.text}"
            for code, (what, pattern) in ART34_CHECKS.items():
                found = pattern.search(words) or (
                    code == "gdpr_contact_point_missing" and _ADDRESS_OR_PHONE.search(words)
                )
                if not found:
                    warn(
                        code,
                        locale,
                        f"Personal data was exposed, and this text does not seem to give {what} "
                        "(GDPR Art. 34).",
                    )
    return warnings


# --- Sending progress ---------------------------------------------------------------------

RATE_WINDOW_SECONDS = 60


def _contacted(incident_id: int) -> Exists:
    """The person already has an apology in this incident (not counting "send again" copies).

    The partial unique index `delivery_once_per_incident` answers it.
    """
    return Exists(
        Delivery.objects.filter(incident_id=incident_id, person=OuterRef("pk"), resend=False)
    )


@dataclass(frozen=True)
class LaunchPreview:
    """What launching a segment's apology now would do, counted the way campaign_launch counts."""

    people: int  # active people in the segment
    contacted: int  # of them, people who already have an apology in this incident
    send_again: bool
    recipients: int  # people who get a delivery: everyone with send_again, else the rest
    suppressed: int  # recipients whose address is suppressed: recorded, never sent to
    resends: int  # recipients who already had one (send again only)

    @property
    def to_send(self) -> int:
        return self.recipients - self.suppressed

    @property
    def skipped_contacted(self) -> int:
        return 0 if self.send_again else self.contacted


def launch_preview(*, segment: Segment, send_again: bool = False) -> LaunchPreview:
    """Who a launch would reach: the numbers the confirmation states, in one query."""
    suppressed = Exists(Suppression.objects.filter(address=OuterRef("address")))
    row = (
        AffectedPerson.objects.filter(
            incident_id=segment.incident_id, segment=segment, removed_at__isnull=True
        )
        .annotate(in_campaign=_contacted(segment.incident_id), is_suppressed=suppressed)
        .aggregate(
            people=Count("id"),
            contacted=Count("id", filter=Q(in_campaign=True)),
            suppressed_all=Count("id", filter=Q(is_suppressed=True)),
            suppressed_new=Count("id", filter=Q(in_campaign=False, is_suppressed=True)),
        )
    )
    if send_again:
        recipients, suppressed_n, resends = (
            row["people"],
            row["suppressed_all"],
            row["contacted"],
        )
    else:
        recipients, suppressed_n, resends = (
            row["people"] - row["contacted"],
            row["suppressed_new"],
            0,
        )
    return LaunchPreview(
        people=row["people"],
        contacted=row["contacted"],
        send_again=send_again,
        recipients=recipients,
        suppressed=suppressed_n,
        resends=resends,
    )


def uncontacted_by_segment(*, incident: Incident) -> dict[int, int]:
    """Active people without an apology yet, per segment id (a launch or a top-up reaches them)."""
    rows = (
        AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True)
        .exclude(_contacted(incident.pk))
        .values_list("segment_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def campaign_list(*, incident: Incident) -> QuerySet[Campaign]:
    """The incident's campaigns, newest first, with what the Sending tab shows of each."""
    return Campaign.objects.filter(incident=incident).select_related(
        "segment", "version__message", "launched_by"
    )


def delivery_counts(*, incident: Incident) -> dict[int, dict[str, int]]:
    """Deliveries per status for each of the incident's campaigns: {campaign id: {status: n}}."""
    rows = (
        Delivery.objects.filter(campaign__incident=incident)
        .values_list("campaign_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[int, dict[str, int]] = {}
    for campaign_id, status, n in rows:
        counts.setdefault(campaign_id, {})[status] = n
    return counts


@dataclass(frozen=True)
class CampaignProgress:
    """Where a campaign stands: counts per delivery state, rate over the last minute, an ETA."""

    counts: dict[str, int]  # every delivery status, 0 where none
    total: int
    pending: int  # queued or sending: still to be handed to the ESP
    accepted: int  # handed to the ESP (sent, and the ESP's later states)
    rate: float  # messages per second over the last minute, from sent_at
    window_seconds: float
    eta_seconds: float | None  # None when nothing is left or the campaign is not running
    eta_basis: str  # "rate" (the current rate), "limit" (the rate limit: nothing sent lately) or ""

    @property
    def done(self) -> int:
        return self.total - self.pending

    @property
    def percent(self) -> int:
        """Whole percent done, rounded down: 100 only when nothing is pending."""
        return self.done * 100 // self.total if self.total else 0


def campaign_progress(*, campaign: Campaign, now: datetime | None = None) -> CampaignProgress:
    """Counts per state and the current rate, in one grouped query over the campaign's rows."""
    now = now or timezone.now()
    since = now - timedelta(seconds=RATE_WINDOW_SECONDS)
    rows = (
        Delivery.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Count("id"), recent=Count("id", filter=Q(sent_at__gte=since)))
        .order_by()
    )
    counts = dict.fromkeys(Delivery.Status.values, 0)
    recent = 0
    for status, n, sent_lately in rows:
        counts[status] = n
        recent += sent_lately
    # A campaign launched 10 s ago has sent for 10 s, not for a minute.
    start = max(since, campaign.launched_at or since)
    window = max(1.0, (now - start).total_seconds())
    rate = recent / window
    pending = sum(counts[s] for s in PENDING)
    eta, basis = None, ""
    if pending and campaign.status == Campaign.Status.RUNNING:
        if rate > 0:
            eta, basis = pending / rate, "rate"
        else:
            eta, basis = pending / max(1, campaign.rate_limit), "limit"
    return CampaignProgress(
        counts=counts,
        total=sum(counts.values()),
        pending=pending,
        accepted=sum(counts[s] for s in ACCEPTED),
        rate=rate,
        window_seconds=window,
        eta_seconds=eta,
        eta_basis=basis,
    )


def delivery_list(*, campaign: Campaign, status: str = "", search: str = "") -> QuerySet[Delivery]:
    """A campaign's deliveries in id order, by status and by address (or exact code)."""
    qs = Delivery.objects.filter(campaign=campaign)
    if status:
        qs = qs.filter(status=status)
    search = search.strip()
    if search:
        qs = qs.filter(Q(address__icontains=search) | Q(verification_code=search.upper()))
    return qs
