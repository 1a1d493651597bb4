"""What every API view shares: the base view, the error format and pagination.

Every error leaves the API as

    {"error": {"status": 400, "code": "validation_failed", "message": "…",
               "fields": {"title": ["This field is required."]}}}

`fields` appears only on validation errors. docs/api.md lists the codes.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from incidents.access import SAFE_METHODS
from incidents.models import IllegalTransition

# DRF imports this module lazily through REST_FRAMEWORK (Pagination, exception_handler).
# Keep it free of views and of anything that imports rest_framework.generics or
# drf_spectacular.views: those read DEFAULT_PAGINATION_CLASS while this module is
# still half-imported. Endpoints live in incidents/api.py.

NON_FIELD = api_settings.NON_FIELD_ERRORS_KEY  # "non_field_errors"


class Pagination(PageNumberPagination):
    """`?page=2&page_size=100`; the envelope is DRF's count/next/previous/results."""

    page_size_query_param = "page_size"
    max_page_size = 500


# --- Errors ---------------------------------------------------------------------


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


# DRF's own codes, renamed where ours read better to a client.
_CODES = {
    "invalid": "validation_failed",
    "error": "server_error",
}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field": [...], "items.0.name": [...]}."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = NON_FIELD if key in ("__all__", NON_FIELD) and not prefix else str(key)
            out.update(_flatten(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        out = {}
        for index, item in enumerate(detail):
            if item:
                out.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    messages = detail if isinstance(detail, list) else [detail]
    return {prefix or NON_FIELD: [str(message) for message in messages]}


# Service refusals that name what went wrong: a client can act on the code.
# A decision by someone who may not make it is a 403; a request overtaken by
# another change (or repeating one) is a 409.
_SERVICE_CODES = {
    "self_approval": exceptions.PermissionDenied,
    "already_decided": Conflict,
    "not_latest": Conflict,
    "stale_version": Conflict,
    "unchanged": Conflict,
    # Contact tracking (incidents/services/contact.py and the completion gate).
    "contact_incomplete": Conflict,
    "illegal_contact_transition": Conflict,
    "contact_done": Conflict,
    "person_removed": Conflict,
    "waive_not_allowed": exceptions.PermissionDenied,
    "too_many": exceptions.ParseError,  # a 400 that keeps its own code
}


def _from_django(exc: DjangoValidationError) -> exceptions.APIException:
    """Services validate with full_clean(); their errors become ours."""
    if isinstance(exc, IllegalTransition):
        # Well-formed but impossible from the incident's current status: a conflict.
        return Conflict(" ".join(exc.messages), code="illegal_transition")
    code = getattr(exc, "code", None)
    if not hasattr(exc, "error_dict") and code in _SERVICE_CODES:
        api_exc = _SERVICE_CODES[code](" ".join(exc.messages), code=code)
        # What a client needs to act on the refusal (the completion gate's counts).
        api_exc.details = (getattr(exc, "params", None) or {}).get("blocking")
        return api_exc
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError(exc.message_dict)
    return exceptions.ValidationError({NON_FIELD: exc.messages})


def _validation_message(fields: dict[str, list[str]]) -> str:
    named = [name for name in fields if name != NON_FIELD]
    if not named:
        return fields[NON_FIELD][0]
    return f"Please correct the request: {', '.join(named)}."


def exception_handler(exc, context):
    """Render every API error, DRF's or a service's, in the one error format.

    Anything not handled here (a bug) stays a 500 for Django, so it is logged
    and reported with its traceback.
    """
    if isinstance(exc, DjangoValidationError):
        exc = _from_django(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)

    response = drf_exception_handler(exc, context)  # sets WWW-Authenticate, Retry-After
    if response is None:
        return None

    body: dict = {"status": response.status_code}
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        body["code"] = "validation_failed"
        body["message"] = _validation_message(fields)
        body["fields"] = fields
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        body["code"] = _CODES.get(code, code)
        body["message"] = str(exc.detail)
        if getattr(exc, "details", None):
            body["details"] = exc.details
    response.data = {"error": body}
    return response


class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
    details = serializers.DictField(
        child=serializers.IntegerField(),
        required=False,
        help_text="contact_incomplete only: the people blocking, per contact status.",
    )


class ErrorSerializer(serializers.Serializer):
    """The one error format, for the OpenAPI schema."""

    error = ErrorDetailSerializer()

    class Meta:
        ref_name = "Error"


_ERROR_DESCRIPTIONS = {
    400: "Invalid input (`validation_failed`, with `fields`).",
    401: "Not signed in: no or a wrong token (`not_authenticated`, `authentication_failed`).",
    403: "The role does not allow this (`permission_denied`).",
    404: "Not found (`not_found`).",
    409: "Not possible from the current state (`illegal_transition`).",
    429: "Too many requests (`throttled`).",
}


def error_responses(*codes: int, signed_in: bool = True) -> dict[int, OpenApiResponse]:
    """Schema entries for an endpoint's errors; 401, 403 and 429 come with signing in."""
    wanted = sorted({429, *codes, *((401, 403) if signed_in else ())})
    return {
        code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[code])
        for code in wanted
    }


# --- Views ----------------------------------------------------------------------


class ApiView(APIView):
    """Base for Amends API views. Each subclass names permission_classes and its perms.

    `read_perm` guards GET/HEAD/OPTIONS and `write_perm` everything else (HasPerms).
    """

    read_perm: str | None = None
    write_perm: str | None = None

    def perm_for(self, request) -> str | None:
        return self.read_perm if request.method in SAFE_METHODS else self.write_perm

    def permission_denied(self, request, message=None, code=None):
        if message is None and request.user and request.user.is_authenticated:
            perm = self.perm_for(request)
            if perm is None:  # no role may do this here, e.g. writing to a read-only view
                raise exceptions.MethodNotAllowed(request.method)
            # Name the missing permission, as the web views do (access.require).
            message = f"Your role does not allow this ({perm})."
        super().permission_denied(request, message=message, code=code)

    def paginated_response(self, queryset, serializer_class):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        data = serializer_class(page, many=True, context={"request": self.request}).data
        return paginator.get_paginated_response(data)


class JsonErrorsMixin:
    """For views that render something else (YAML, HTML): their errors are still JSON."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
