"""Checking a verification code: is this apology really from us? (docs/verification.md)

The answer is one bit, "genuine" or "not recognised", and nothing about it may
leak more than that bit:

- every look-up runs the same steps: normalise, one query on the unique index
  (with a value that cannot exist when the input is malformed), a comparison
  of SHA-256 digests, then the status check; nothing returns early;
- unknown, malformed, cancelled and never-sent codes give the same result,
  field for field;
- a genuine answer carries the company, the incident's title and reference and
  the day it was sent: never the address, name or anything else about the person.

Only deliveries handed to the ESP count (sent, the ESP's later states, and
`uncertain`, which was handed over but whose answer was lost: the person may
well have it). A queued, cancelled, suppressed or failed delivery's code was
never in anyone's inbox.
"""

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.utils import timezone

from campaigns.models.sending import (
    ACCEPTED,
    CODE_ALPHABET,
    CODE_LENGTH,
    Delivery,
    DeliveryStatus,
)

COUNTED = frozenset((*ACCEPTED, DeliveryStatus.UNCERTAIN))
# People type at most this much; anything longer is cut before any work.
INPUT_MAX_CHARS = 64
# Crockford's decoding rules: look-alikes read as the digit they resemble.
_LOOKALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})
# Spaces, dashes of every kind, dots and underscores people put in while copying.
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212._]+")
_VALID = re.compile(f"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}")
# Looked up when the input cannot be a code: the query still runs, and finds nothing.
_NEVER = "~" * CODE_LENGTH


def normalise_code(raw: str) -> str:
    """What a customer typed, as a code: "abcd-e1o2 il" → "ABCDE10211"."""
    text = unicodedata.normalize("NFKC", (raw or "")[:INPUT_MAX_CHARS]).upper()
    return _SEPARATORS.sub("", text).translate(_LOOKALIKES)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class Verification:
    genuine: bool
    company: str
    incident_title: str = ""
    incident_reference: str = ""
    sent_on: date | None = None


def verify_code(raw: str) -> Verification:
    """Whether `raw` is the code of an apology we handed to the ESP, and which."""
    candidate = normalise_code(raw)
    lookup = candidate if _VALID.fullmatch(candidate) else _NEVER
    rows = list(
        Delivery.objects.filter(verification_code=lookup)
        .order_by()
        .values_list(
            "verification_code",
            "status",
            "sent_at",
            "campaign__launched_at",
            "incident__title",
            "incident__reference",
        )[:1]
    )
    found = bool(rows)
    stored, status, sent_at, launched_at, title, reference = (
        rows[0] if found else (_NEVER + "!", "", None, None, "", "")
    )
    # The index matched already; comparing digests as well keeps a looser database
    # collation (case-insensitive, space-padded) from ever widening what matches.
    same = hmac.compare_digest(_digest(stored), _digest(candidate))
    genuine = found & same & (status in COUNTED)
    # An uncertain delivery has no sent_at: it went out during its campaign.
    when = sent_at or launched_at
    sent_on = timezone.localdate(when) if when else None
    if not genuine:
        return Verification(genuine=False, company=settings.COMPANY_NAME)
    return Verification(
        genuine=True,
        company=settings.COMPANY_NAME,
        incident_title=title,
        incident_reference=reference,
        sent_on=sent_on,
    )
