"""The suppression list: add, lift with a reason, import a file. Audited with pseudonyms."""

import csv
import io

from django.core.exceptions import ValidationError
from django.db import transaction

from campaigns.models import Suppression
from incidents import audit
from incidents.actors import Actor
from incidents.addresses import InvalidAddress, normalise
from incidents.pseudonym import address_ref

MAX_SUPPRESSION_ROWS = 1_000_000


def _address(raw: str) -> str:
    try:
        return normalise(raw)
    except InvalidAddress as exc:
        raise ValidationError({"address": str(exc)}) from exc


@transaction.atomic
def suppression_add(
    *, address: str, reason: str, source: str, by: Actor, note: str = ""
) -> tuple[Suppression, bool]:
    """Suppress `address`. Returns (suppression, created); an existing entry is kept as it is."""
    if reason not in Suppression.Reason.values:
        raise ValidationError({"reason": f"“{reason}” is not a suppression reason."})
    if source not in Suppression.Source.values:
        raise ValidationError({"source": f"“{source}” is not a suppression source."})
    normalised = _address(address)
    suppression, created = Suppression.objects.get_or_create(
        address=normalised,
        defaults={"reason": reason, "source": source, "note": note.strip(), "created_by": by.user},
    )
    if created:
        audit.record(
            by=by,
            action="suppression.added",
            obj=suppression,
            after={"person": address_ref(normalised), "reason": reason, "source": source},
        )
    return suppression, created


@transaction.atomic
def suppression_remove(*, suppression: Suppression, reason: str, by: Actor) -> None:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why this address may be e-mailed again."})
    before = {
        "person": address_ref(suppression.address),
        "reason": suppression.reason,
        "source": suppression.source,
    }
    pk = suppression.pk
    suppression.delete()
    audit.record(
        by=by,
        action="suppression.removed",
        object_type="campaigns.suppression",
        object_id=str(pk),
        before=before,
        after={"why": reason},
    )


@transaction.atomic
def suppression_import(*, text: str, default_reason: str, by: Actor) -> dict:
    """Add suppressions from a CSV with an `address` column (and optional `reason`, `note`)."""
    reader = csv.DictReader(io.StringIO(text))
    headers = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "address" not in headers and "email" not in headers:
        raise ValidationError("The file needs an “address” (or “email”) column.")
    reader.fieldnames = headers
    wanted: dict[str, Suppression] = {}
    problems = []
    for row in reader:
        if len(wanted) + len(problems) >= MAX_SUPPRESSION_ROWS:
            raise ValidationError(f"A suppression file holds at most {MAX_SUPPRESSION_ROWS} rows.")
        reason = (row.get("reason") or default_reason).strip()
        try:
            if reason not in Suppression.Reason.values:
                raise InvalidAddress(f"“{reason}” is not a suppression reason")
            address = normalise(row.get("address") or row.get("email") or "")
        except InvalidAddress as exc:
            problems.append({"line": reader.line_num, "reason": str(exc)})
            continue
        wanted.setdefault(
            address,
            Suppression(
                address=address,
                reason=reason,
                source=Suppression.Source.IMPORT,
                note=(row.get("note") or "").strip(),
                created_by=by.user,
            ),
        )
    before = Suppression.objects.count()
    Suppression.objects.bulk_create(list(wanted.values()), batch_size=2000, ignore_conflicts=True)
    added = Suppression.objects.count() - before
    result = {"added": added, "already_suppressed": len(wanted) - added, "problems": problems}
    audit.record(
        by=by,
        action="suppression.imported",
        object_type="campaigns.suppression",
        after={k: v if k != "problems" else len(v) for k, v in result.items()},
    )
    return result
