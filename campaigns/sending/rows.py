"""What a send job reads of each claimed delivery and its person: plain rows, not models.

A chunk's rows are read with one `values_list` query. Building two Django
model instances per row (signals, field descriptors, deferred fields) cost
a sending worker more CPU than its hand-overs and answers together.
"""

from dataclasses import dataclass
from datetime import datetime

from campaigns.models import Delivery

Status = Delivery.Status


@dataclass(slots=True, frozen=True)
class Person:
    id: int
    address: str
    locale: str
    metadata: dict
    customer_id: str
    first_sent_at: datetime | None
    removed_at: datetime | None


@dataclass(slots=True, frozen=True)
class SendRow:
    """A claimed delivery, as its claim left it (status `sending`, with the claim's lease)."""

    pk: int
    campaign_id: int
    status: str
    address: str
    locale: str
    attempts: int
    lease_until: datetime | None
    claim_id: int | None
    verification_code: str
    person: Person

    def __str__(self) -> str:  # as Delivery's, for the audit entry's object_repr
        return f"delivery {self.pk} ({Status(self.status).label})"


_FIELDS = (
    "id",
    "campaign_id",
    "status",
    "address",
    "locale",
    "attempts",
    "lease_until",
    "claim_id",
    "verification_code",
    "person__id",
    "person__address",
    "person__locale",
    "person__metadata",
    "person__customer_id",
    "person__first_sent_at",
    "person__removed_at",
)


def claimed_rows(ids: list[int]) -> list[SendRow]:
    """The rows of `ids` still `sending`, in id order."""
    rows = (
        Delivery.objects.filter(id__in=ids, status=Status.SENDING)
        .order_by("id")
        .values_list(*_FIELDS)
    )
    return send_rows(rows)


def send_rows(rows) -> list[SendRow]:
    """SendRows from value tuples in the order of _FIELDS."""
    return [SendRow(*row[:9], person=Person(*row[9:])) for row in rows]


# The same columns, as the PostgreSQL claim returns them (campaigns.sending.claims): `d` the
# claimed delivery, `p` its person.
SQL_COLUMNS = ", ".join(
    f"p.{name.removeprefix('person__')}" if name.startswith("person__") else f"d.{name}"
    for name in _FIELDS
)
METADATA = _FIELDS.index("person__metadata")
PERSON_ADDRESS = _FIELDS.index("person__address")
