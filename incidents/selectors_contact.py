"""Reads for contact tracking: who is reached, who is not, and what blocks resolving.

The follow-up queue and the people lists are keyset-paged by id (incidents.paging),
so page 1,000 of a million people costs what page 1 does. Filters use the
(incident, contact_status) and (incident, segment) indexes; the reason a person
is unreachable comes from their latest delivery, looked up per row by the
delivery's person index.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone

from incidents.models import AffectedPerson, Incident
from incidents.models.contact import DONE, ContactStatus

User = get_user_model()

# Why someone may need a follow-up, from their latest delivery in the incident.
REASONS = {
    "hard_bounce": "Hard bounce",
    "soft_bounce": "Soft bounce",
    "complained": "Complaint",
    "rejected": "Rejected by the ESP",
    "failed": "Sending failed",
    "suppressed": "Suppressed address",
    "no_email": "No email sent",
}
# Deliveries that did not reach the person: a pending person with one needs a follow-up too.
FAILED_DELIVERY = ("bounced", "complained", "rejected", "failed", "suppressed")


def _latest_delivery(field: str) -> Subquery:
    from campaigns.models import Delivery

    latest = Delivery.objects.filter(person=OuterRef("pk")).order_by("-id").values(field)[:1]
    return Subquery(latest)


def _reason_q(reason: str) -> Q:
    if reason == "no_email":
        return Q(delivery_status__isnull=True)
    if reason == "hard_bounce":
        return Q(delivery_status="bounced", delivery_bounce_kind="hard")
    if reason == "soft_bounce":
        return Q(delivery_status="bounced") & ~Q(delivery_bounce_kind="hard")
    return Q(delivery_status=reason)


def reason_of(person: AffectedPerson) -> str:
    """The follow-up reason code of a person annotated by contact_people()."""
    status = getattr(person, "delivery_status", None)
    if status is None:
        return "no_email"
    if status == "bounced":
        return "hard_bounce" if person.delivery_bounce_kind == "hard" else "soft_bounce"
    return status if status in REASONS else ""


def contact_people(
    *,
    incident: Incident,
    status: str = "",
    segment_id: int | None = None,
    assignee: str = "",
    user=None,
    reason: str = "",
    locale: str = "",
    search: str = "",
    failed_pending: bool = False,
) -> QuerySet[AffectedPerson]:
    """The incident's active people by contact status, in id order, for lists and bulk actions.

    `status` is one contact status or "" for all. `assignee` is "mine" (needs `user`),
    "none" (unassigned), a user id, or "" for anyone. `failed_pending` adds the pending
    people whose email did not get through to an `unreachable` list: they need a
    follow-up too, though no event has marked them yet.
    Each row carries `delivery_status` and `delivery_bounce_kind` of the latest delivery.
    """
    from campaigns.models import Delivery

    qs = AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True)
    if status == ContactStatus.UNREACHABLE and failed_pending:
        failed = Exists(
            Delivery.objects.filter(
                incident_id=incident.pk, person=OuterRef("pk"), status__in=FAILED_DELIVERY
            )
        )
        qs = qs.filter(
            Q(contact_status=status) | (Q(contact_status=ContactStatus.PENDING) & failed)
        )
    elif status:
        qs = qs.filter(contact_status=status)
    if segment_id:
        qs = qs.filter(segment_id=segment_id)
    if assignee == "mine":
        qs = qs.filter(followup_assignee=user) if user is not None else qs.none()
    elif assignee == "none":
        qs = qs.filter(followup_assignee__isnull=True)
    elif assignee.isdigit():
        qs = qs.filter(followup_assignee_id=int(assignee))
    if locale:
        qs = qs.filter(locale=locale)
    if search:
        needle = search.strip()
        qs = qs.filter(Q(address__contains=needle.lower()) | Q(customer_id=needle))
    qs = qs.annotate(
        delivery_status=_latest_delivery("status"),
        delivery_bounce_kind=_latest_delivery("bounce_kind"),
    )
    if reason in REASONS:
        qs = qs.filter(_reason_q(reason))
    return qs.select_related("segment", "followup_assignee").order_by("id")


def contact_person(*, incident: Incident, person_id: int) -> AffectedPerson:
    """One person of the incident (removed ones too), with their segment and assignee."""
    return (
        AffectedPerson.objects.select_related("segment", "followup_assignee", "removed_by")
        .annotate(
            delivery_status=_latest_delivery("status"),
            delivery_bounce_kind=_latest_delivery("bounce_kind"),
        )
        .get(incident=incident, pk=person_id)
    )


def contact_history(*, person: AffectedPerson):
    """Every change to the person's contact status, oldest first."""
    return person.contact_records.select_related("recorded_by").order_by("recorded_at", "id")


def person_deliveries(*, person: AffectedPerson):
    from campaigns.models import Delivery

    return Delivery.objects.filter(person=person).select_related("campaign").order_by("id")


def followup_assignees() -> QuerySet:
    """Active users who may follow people up (record_contact, through their role)."""
    can = Q(groups__permissions__codename="record_contact") & Q(
        groups__permissions__content_type__app_label="incidents"
    )
    return (
        User.objects.filter(can | Q(is_superuser=True), is_active=True)
        .distinct()
        .order_by("username")
    )


# --- Completion gate ------------------------------------------------------------------


@dataclass(frozen=True)
class Blocker:
    status: str
    label: str
    people: int
    url: str  # the page that lists them
    api_url: str


def contact_blocking(*, incident: Incident) -> dict[str, int]:
    """Active people who are neither contacted nor waived, per contact status (exact).

    The (incident, contact_status) index finds only the not-yet-done rows, so a
    finished million-person incident answers in milliseconds.
    """
    rows = (
        AffectedPerson.objects.filter(incident=incident, removed_at__isnull=True)
        .exclude(contact_status__in=DONE)
        .values_list("contact_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = dict(rows)
    return {status: counts[status] for status in ContactStatus.values if counts.get(status)}


def completion_blockers(*, incident: Incident) -> list[Blocker]:
    """What keeps the incident from being resolved, with a link to each list."""
    people_url = reverse("incidents:followup", kwargs={"reference": incident.reference})
    api_url = reverse("api-contact-people", kwargs={"reference": incident.reference})
    return [
        Blocker(
            status=status,
            label=ContactStatus(status).label,
            people=n,
            url=f"{people_url}?status={status}",
            api_url=f"{api_url}?status={status}",
        )
        for status, n in contact_blocking(incident=incident).items()
    ]


# --- Reconciliation: sent, never confirmed ---------------------------------------------


def unconfirmed_cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(minutes=settings.RECONCILE_UNCONFIRMED_AFTER_MINUTES)


def unconfirmed_deliveries(*, incident: Incident, now: datetime | None = None):
    """Deliveries handed to the ESP longer ago than the window with no ESP event since.

    Their status is still `sent`: no delivered, deferred, bounce, rejection or
    complaint arrived. Without joins and with the campaign ids as literals, so a
    page is a walk along the primary key that stops after 50 rows, even when a
    hundred thousand are unconfirmed; `with_people` adds the people to a page.
    """
    from campaigns.models import Campaign, Delivery

    campaigns = list(Campaign.objects.filter(incident=incident).values_list("pk", flat=True))
    return Delivery.objects.filter(
        campaign_id__in=campaigns,
        status=Delivery.Status.SENT,
        sent_at__lt=unconfirmed_cutoff(now),
    ).order_by("id")


def with_people(deliveries) -> list:
    """The same deliveries (a page or a chunk) with their person and segment, in id order."""
    from campaigns.models import Delivery

    ids = [d.pk for d in deliveries]
    return list(
        Delivery.objects.filter(pk__in=ids).select_related("person__segment").order_by("id")
    )
