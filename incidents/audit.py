"""Writing and verifying the hash-chained audit trail."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.models import AuditEntry, Incident
from incidents.models.audit import GENESIS_HASH

# Any constant works; it names the one lock every audit writer queues on.
_CHAIN_LOCK_ID = 0x616D656E6473  # "amends"


def _plain(value: Any) -> Any:
    """JSON-safe copy, exactly as the database will hand it back (dates as strings)."""
    import json

    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _lock_chain() -> None:
    # PostgreSQL: one transaction-scoped advisory lock, so concurrent writers
    # take turns reading the head and appending; the chain can never fork.
    # SQLite: transactions are IMMEDIATE (settings), which already serialises writers.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_ID])


def record(
    *,
    by: Actor,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
    incident: Incident | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEntry:
    """Append one audit entry. Call it inside the transaction that makes the change."""
    with transaction.atomic():
        _lock_chain()
        head = AuditEntry.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
        if obj is not None:
            object_type = object_type or obj._meta.label_lower
            object_id = object_id or str(obj.pk)
        entry = AuditEntry(
            seq=seq,
            created_at=timezone.now(),
            actor=by.user,
            actor_label=by.label[:150],
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=(object_repr or (str(obj) if obj is not None else ""))[:200],
            incident=incident,
            before=_plain(before),
            after=_plain(after),
            ip=by.ip,
            prev_hash=prev_hash,
        )
        entry.hash = entry.compute_hash()
        entry.save(force_insert=True)
        return entry


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


@dataclass(frozen=True)
class ChainReport:
    checked: int
    head_hash: str
    broken: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _entries() -> Iterator[AuditEntry]:
    return AuditEntry.objects.order_by("seq").iterator(chunk_size=2000)


def verify_chain() -> ChainReport:
    """Recompute every hash in order and name the first entry that does not fit."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    for entry in _entries():
        if entry.seq != expected_seq:
            reason = f"entry #{expected_seq} is missing (next present is #{entry.seq})"
            return ChainReport(checked, prev_hash, ChainBreak(expected_seq, reason))
        if entry.prev_hash != prev_hash:
            reason = "its previous-hash does not match the entry before it"
            return ChainReport(checked, prev_hash, ChainBreak(entry.seq, reason))
        if entry.compute_hash() != entry.hash:
            reason = "its content does not match its hash (edited)"
            return ChainReport(checked, prev_hash, ChainBreak(entry.seq, reason))
        expected_seq, prev_hash, checked = entry.seq + 1, entry.hash, checked + 1
    return ChainReport(checked, prev_hash, None)


def snapshot(obj: models.Model, fields: list[str]) -> dict:
    """The named fields of `obj` as plain values, for before/after."""
    out = {}
    for name in fields:
        field = obj._meta.get_field(name)
        out[name] = getattr(obj, field.attname)
    return _plain(out)
