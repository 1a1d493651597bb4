"""Keyed pseudonyms for addresses, for audit entries and pseudonymised exports.

The audit trail can never be edited, so it must never hold a raw address;
it holds this keyed hash instead, which still lets an auditor match entries
about the same person without revealing who it is.
"""

import hashlib
import hmac
import re

from django.conf import settings

from incidents.addresses import InvalidAddress, normalise


def address_ref(address: str) -> str:
    key = (settings.PSEUDONYM_KEY or settings.SECRET_KEY).encode()
    return "p_" + hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:24]


# Something shaped like an address inside free text ("reached jane@example.com by phone").
_ADDRESS_IN_TEXT = re.compile(
    r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+\.[^\s@<>()\[\],;:\"'.]+"
)


def pseudonymise_addresses(text: str) -> str:
    """`text` with each address in it replaced by its pseudonym.

    For what staff type (a contact note, a waiver or removal reason) on its way
    into the audit trail, and for what stays after retention: an auditor can
    still tell that two notes name the same person, not who it is.
    """
    if "@" not in text:
        return text

    def ref(match: re.Match) -> str:
        try:
            return address_ref(normalise(match.group(0)))
        except InvalidAddress:
            return address_ref(match.group(0).lower())

    return _ADDRESS_IN_TEXT.sub(ref, text)
