"""E-mail address normalisation: the one definition of "the same person"."""

from functools import lru_cache


class InvalidAddress(ValueError):
    pass


@lru_cache(maxsize=65536)
def _ascii_domain(domain: str) -> str:
    # Lower-case first: IDN labels compare case-insensitively, and punycode of
    # an upper-case label would differ. The stdlib "idna" codec is IDNA 2003.
    domain = domain.lower().rstrip(".")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidAddress(f"the domain “{domain}” is not a valid domain name") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or any(not label or len(label) > 63 for label in labels):
        raise InvalidAddress(f"the domain “{domain}” is not a valid domain name")
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        raise InvalidAddress(f"the domain “{domain}” is not a valid domain name")
    return ascii_domain


def normalise(raw: str | None) -> str:
    """`Cust1@Example.com`, ` cust1@example.com ` and `cust1@EXAMPLE.COM` → one address.

    Trimmed; the domain lower-cased and converted from IDN to ASCII; the local
    part lower-cased, because we compare it case-insensitively. Raises
    InvalidAddress with a reason a person can act on.
    """
    if raw is None:
        raise InvalidAddress("the address is empty")
    if "\r" in raw or "\n" in raw:
        raise InvalidAddress("the address contains a line break (CR/LF)")
    address = raw.strip()
    if not address:
        raise InvalidAddress("the address is empty")
    if len(address) > 320:
        raise InvalidAddress("the address is longer than 320 characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in address):
        raise InvalidAddress("the address contains whitespace or control characters")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress("the address has no local part, @ and domain")
    if len(local) > 64:
        raise InvalidAddress("the part before @ is longer than 64 characters")
    if "<" in address or ">" in address or "," in address:
        raise InvalidAddress("the address contains <, > or a comma: give one bare address")
    return f"{local.lower()}@{_ascii_domain(domain)}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]
