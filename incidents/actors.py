from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

# One resolver for audit entries, login lockouts (django-axes) and rate limits: the client
# behind PROXY_COUNT proxies, or None when that names no IP address.
from config.ratelimit import client_ip


@dataclass(frozen=True)
class Actor:
    """Who is acting, and from where: what every audit entry records."""

    user: AbstractBaseUser | None
    label: str
    ip: str | None = None

    @classmethod
    def from_request(cls, request: HttpRequest) -> "Actor":
        user = request.user if request.user.is_authenticated else None
        label = user.get_username() if user else "anonymous"
        return cls(user=user, label=label, ip=client_ip(request))

    @classmethod
    def for_user(cls, user: AbstractBaseUser, *, ip: str | None = None) -> "Actor":
        return cls(user=user, label=user.get_username(), ip=ip)

    @classmethod
    def system(cls, label: str) -> "Actor":
        """Background jobs, webhooks and commands act as `system:<what>`."""
        return cls(user=None, label=f"system:{label}")
