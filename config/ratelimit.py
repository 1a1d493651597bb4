"""A fixed-window rate limit per client address, counted in the shared cache.

Twenty lines instead of django-ratelimit: its last release predates Django 6, and
we need only one limit on one view. Counters live in the "shared" cache (Redis
when REDIS_URL is set), so every web process counts together. If Redis is down
the count falls back to this process's memory: the page stays up, limited per
process, rather than failing or going unlimited.
"""

import ipaddress
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int  # seconds until the window ends


def client_address(request: HttpRequest) -> str:
    """The client's address, seen through PROXY_COUNT proxies.

    Each trusted proxy appends the address it saw to X-Forwarded-For, so the
    client is the PROXY_COUNT-th entry from the right; entries further left are
    whatever the client claimed. django-axes uses it too, through `client_ip`
    (AXES_CLIENT_IP_CALLABLE): on its own it honours the count only through django-ipware.
    """
    proxies = settings.AXES_IPWARE_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-proxies] if len(hops) >= proxies else hops[0]
    return request.META.get("REMOTE_ADDR") or "unknown"


def client_ip(request: HttpRequest) -> str | None:
    """`client_address` when it is an IP address, else None: what django-axes stores."""
    try:
        return str(ipaddress.ip_address(client_address(request)))
    except ValueError:
        return None  # no REMOTE_ADDR (a test client's login), or a proxy that sent garbage


def client_bucket(request: HttpRequest) -> str:
    """What one client counts as: its address, or for IPv6 its /64.

    One subscriber usually holds a whole IPv6 /64, so counting single addresses
    would give them billions of allowances.
    """
    raw = client_address(request)
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64]
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:  # ::ffff:203.0.113.7 is 203.0.113.7
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def _incr(cache, key: str, window: int) -> int:
    cache.add(key, 0, timeout=window + 1)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window + 1)
        return 1


def hit(*, scope: str, request: HttpRequest, limit: int, window: int) -> Verdict:
    """Count one attempt by this client in `scope`; refuse beyond `limit` per `window` s."""
    now = time.time()
    slot = int(now // window)
    key = f"ratelimit:{scope}:{client_bucket(request)}:{slot}"
    try:
        count = _incr(caches["shared"], key, window)
    except Exception:  # noqa: BLE001 - a cache outage must not take the page down
        log.warning("Shared cache unavailable; rate limit %s counted per process", scope)
        count = _incr(caches["default"], key, window)
    retry_after = max(1, int((slot + 1) * window - now))
    return Verdict(allowed=count <= limit, retry_after=retry_after)
