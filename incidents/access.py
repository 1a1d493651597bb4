"""Access decisions in one place (after Zulip's access_* helpers).

Every web view and API endpoint asks here; nothing is allowed by default.
"""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from rest_framework.permissions import BasePermission

from incidents.models import Incident

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def require(user, perm: str) -> None:
    if not user.has_perm(perm):
        raise PermissionDenied(f"Your role does not allow this ({perm}).")


def get_incident_for(user, reference: str, perm: str = "incidents.view_incident") -> Incident:
    """The incident `reference` if `user` holds `perm`; 403 otherwise, 404 if unknown."""
    require(user, perm)
    return get_object_or_404(Incident.objects.select_related("owner"), reference=reference)


class DenyAll(BasePermission):
    """The API default: an endpoint that names no permission serves nobody."""

    def has_permission(self, request, view):
        return False


class HasPerms(BasePermission):
    """Grants when the user holds the view's `read_perm` (safe methods) or `write_perm`."""

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        attr = "read_perm" if request.method in SAFE_METHODS else "write_perm"
        perm = getattr(view, attr, None)
        return bool(perm) and user.has_perm(perm)
