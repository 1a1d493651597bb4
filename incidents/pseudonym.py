"""Keyed pseudonyms for addresses, for audit entries and pseudonymised exports.

The audit trail can never be edited, so it must never hold a raw address;
it holds this keyed hash instead, which still lets an auditor match entries
about the same person without revealing who it is.
"""

import hashlib
import hmac

from django.conf import settings


def address_ref(address: str) -> str:
    key = (settings.PSEUDONYM_KEY or settings.SECRET_KEY).encode()
    return "p_" + hmac.new(key, address.encode(), hashlib.sha256).hexdigest()[:24]
