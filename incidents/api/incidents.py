"""The JSON API: incidents, and the API's own doors (token, schema, docs).

Thin views (HackSoft style): parse input with a nested InputSerializer, call
one service or selector, render with an output serializer. Each view names
`permission_classes` and its `read_perm`/`write_perm`; access.get_incident_for
makes the same decision for the incident in the URL as the web views do.
"""

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_logged_in
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from config.ratelimit import client_ip
from incidents import selectors, services
from incidents.access import HasPerms, get_incident_for
from incidents.actors import Actor
from incidents.api.helpers import REFERENCE
from incidents.api_common import ApiView, JsonErrorsMixin, Pagination, error_responses
from incidents.models import Incident, TimelineEntry

User = get_user_model()

VIEW_INCIDENT = "incidents.view_incident"

# --- Output ---------------------------------------------------------------------


class IncidentOutputSerializer(serializers.Serializer):
    """One incident as every incident endpoint returns it."""

    reference = serializers.CharField()
    title = serializers.CharField()
    summary = serializers.CharField()
    original_template = serializers.CharField()
    original_subject = serializers.CharField()
    sent_from = serializers.DateTimeField(allow_null=True)
    sent_until = serializers.DateTimeField(allow_null=True)
    esp = serializers.CharField()
    severity = serializers.ChoiceField(choices=Incident.Severity.choices)
    status = serializers.ChoiceField(choices=Incident.Status.choices)
    owner = serializers.CharField(source="owner.username")
    personal_data_exposed = serializers.BooleanField()
    became_aware_at = serializers.DateTimeField(allow_null=True)
    regulator_deadline = serializers.DateTimeField(
        allow_null=True, help_text="became_aware_at + 72 hours when personal data was exposed."
    )
    # Plain strings: a second enum over the status values would need an
    # ENUM_NAME_OVERRIDES entry to keep the schema free of naming warnings.
    allowed_transitions = serializers.ListField(
        child=serializers.CharField(),
        help_text="The statuses (see `status`) the incident can move to from here.",
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    url = serializers.HyperlinkedIdentityField(
        view_name="api-incident-detail", lookup_field="reference", lookup_url_kwarg="reference"
    )

    class Meta:
        ref_name = "Incident"


class TimelineEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=TimelineEntry.Kind.choices)
    body = serializers.CharField()
    author = serializers.CharField(source="author.username", allow_null=True)
    data = serializers.JSONField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "TimelineEntry"


def _incident_response(request, incident: Incident, code: int = status.HTTP_200_OK) -> Response:
    data = IncidentOutputSerializer(incident, context={"request": request}).data
    headers = {"Location": data["url"]} if code == status.HTTP_201_CREATED else None
    return Response(data, status=code, headers=headers)


# --- Authentication -------------------------------------------------------------


class LockedOut(exceptions.APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"

    def __init__(self):
        minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
        self.wait = minutes * 60  # the exception handler turns it into Retry-After
        super().__init__(
            f"Too many failed sign-ins. This account or address is locked for up to {minutes} "
            "minutes; an administrator can unlock it sooner."
        )


class TokenApi(ApiView):
    """Exchange a username and password for the user's API token."""

    # Public: this is how a client gets credentials. No session either, so no CSRF.
    authentication_classes = []
    permission_classes = [AllowAny]
    read_perm = None
    write_perm = None

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField()
        password = serializers.CharField(trim_whitespace=False, style={"input_type": "password"})

        class Meta:
            ref_name = "TokenRequest"

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

        class Meta:
            ref_name = "Token"

    @extend_schema(
        operation_id="auth_token_create",
        summary="Get your API token",
        description="Send a username and password; get the user's token. Five failed "
        "attempts lock the username and the address out (429 `locked_out`). A wrong "
        "password is a 401 with code `invalid_credentials`.",
        tags=["auth"],
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            **error_responses(400, 401, signed_in=False),
        },
        auth=[],
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # Pass DRF's request, not request._request: django-axes then counts the
        # failure and flags a lockout on this object only, so AxesMiddleware
        # leaves our response alone and the lockout is answered in the API's
        # error format below instead of as the HTML lockout page.
        user = authenticate(request=request, **serializer.validated_data)
        if getattr(request, "axes_locked_out", False):
            raise LockedOut()
        if user is None:
            raise exceptions.AuthenticationFailed(
                "Unable to sign in with that username and password.", code="invalid_credentials"
            )
        token = services.user_token_issue(user=user, by=Actor.for_user(user, ip=client_ip(request)))
        # A token sign-in is a sign-in: axes resets the failure count and logs
        # the access, and Django records last_login.
        user_logged_in.send(sender=type(user), request=request, user=user)
        return Response({"token": token.key})

    def get_authenticate_header(self, request):
        # Without authenticators DRF would turn AuthenticationFailed into a 403;
        # a wrong password here is a 401 that names the scheme to use next.
        return "Token"


# --- Incidents ------------------------------------------------------------------


class IncidentListApi(ApiView):
    """List incidents, or open one."""

    permission_classes = [HasPerms]
    read_perm = VIEW_INCIDENT
    write_perm = "incidents.add_incident"
    pagination_class = Pagination

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Incident.Status.choices, required=False)
        severity = serializers.ChoiceField(choices=Incident.Severity.choices, required=False)
        owner = serializers.SlugRelatedField(
            slug_field="username",
            queryset=User.objects.all(),
            required=False,
            help_text="Username of the owner.",
        )
        search = serializers.CharField(
            required=False,
            help_text="Matches reference, title, summary, original template and subject.",
        )

    class InputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=200)
        summary = serializers.CharField()
        original_template = serializers.CharField(max_length=200, required=False, allow_blank=True)
        original_subject = serializers.CharField(max_length=300, required=False, allow_blank=True)
        sent_from = serializers.DateTimeField(required=False, allow_null=True)
        sent_until = serializers.DateTimeField(required=False, allow_null=True)
        esp = serializers.CharField(max_length=100, required=False, allow_blank=True)
        severity = serializers.ChoiceField(choices=Incident.Severity.choices, required=False)
        owner = serializers.SlugRelatedField(
            slug_field="username",
            queryset=User.objects.filter(is_active=True),
            required=False,
            help_text="Username of the owner; defaults to the caller.",
        )
        personal_data_exposed = serializers.BooleanField(required=False)
        became_aware_at = serializers.DateTimeField(required=False, allow_null=True)

        class Meta:
            ref_name = "IncidentInput"

    @extend_schema(
        operation_id="incidents_list",
        summary="List incidents",
        description="Newest first, paginated. Filters combine with AND.",
        tags=["incidents"],
        parameters=[FilterSerializer],
        responses={200: IncidentOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        incidents = selectors.incident_list(
            status=values.get("status", ""),
            severity=values.get("severity", ""),
            owner_id=values["owner"].pk if "owner" in values else None,
            search=values.get("search", ""),
        )
        return self.paginated_response(incidents, IncidentOutputSerializer)

    @extend_schema(
        operation_id="incidents_create",
        summary="Open an incident",
        description="Gets the next reference (INC-<year>-<nnnn>) and writes an audit entry.",
        tags=["incidents"],
        request=InputSerializer,
        responses={201: IncidentOutputSerializer, **error_responses(400)},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        incident = services.incident_open(
            by=Actor.from_request(request), **serializer.validated_data
        )
        return _incident_response(request, incident, status.HTTP_201_CREATED)


class IncidentDetailApi(ApiView):
    """One incident: read it, or change its fields."""

    permission_classes = [HasPerms]
    read_perm = VIEW_INCIDENT
    write_perm = "incidents.change_incident"

    # Every field optional: PATCH changes only what it names.
    InputSerializer = IncidentListApi.InputSerializer

    @extend_schema(
        operation_id="incidents_retrieve",
        summary="Get an incident",
        tags=["incidents"],
        parameters=[REFERENCE],
        responses={200: IncidentOutputSerializer, **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        return _incident_response(request, incident)

    @extend_schema(
        operation_id="incidents_partial_update",
        summary="Change an incident",
        description="Send only the fields to change. Status changes go through /transition/.",
        tags=["incidents"],
        parameters=[REFERENCE],
        request=InputSerializer,
        responses={200: IncidentOutputSerializer, **error_responses(400, 404)},
    )
    def patch(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        incident = services.incident_update(
            incident=incident, by=Actor.from_request(request), **serializer.validated_data
        )
        return _incident_response(request, incident)


class IncidentTransitionApi(ApiView):
    """Move an incident to another status."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = "incidents.transition_incident"

    class InputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Incident.Status.choices)
        note = serializers.CharField(required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "TransitionInput"

    @extend_schema(
        operation_id="incidents_transition",
        summary="Change an incident's status",
        description="Only the moves in `allowed_transitions` are possible; any other "
        "is refused with 409 `illegal_transition`. The note goes on the timeline.",
        tags=["incidents"],
        parameters=[REFERENCE],
        request=InputSerializer,
        responses={200: IncidentOutputSerializer, **error_responses(400, 404, 409)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        incident = services.incident_transition(
            incident=incident,
            to_status=serializer.validated_data["status"],
            note=serializer.validated_data["note"],
            by=Actor.from_request(request),
        )
        return _incident_response(request, incident)


class IncidentTimelineApi(ApiView):
    """An incident's timeline, oldest first; add a note to it."""

    permission_classes = [HasPerms]
    read_perm = VIEW_INCIDENT
    write_perm = "incidents.add_note"
    pagination_class = Pagination

    class InputSerializer(serializers.Serializer):
        body = serializers.CharField()

        class Meta:
            ref_name = "NoteInput"

    @extend_schema(
        operation_id="incidents_timeline_list",
        summary="List an incident's timeline",
        tags=["incidents"],
        parameters=[REFERENCE],
        responses={200: TimelineEntryOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        entries = selectors.incident_timeline(incident=incident)
        return self.paginated_response(entries, TimelineEntryOutputSerializer)

    @extend_schema(
        operation_id="incidents_timeline_note_create",
        summary="Add a note to the timeline",
        tags=["incidents"],
        parameters=[REFERENCE],
        request=InputSerializer,
        responses={201: TimelineEntryOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        entry = services.incident_add_note(
            incident=incident,
            body=serializer.validated_data["body"],
            by=Actor.from_request(request),
        )
        data = TimelineEntryOutputSerializer(entry, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)


# --- Schema and docs ------------------------------------------------------------


class SchemaApi(JsonErrorsMixin, SpectacularAPIView):
    """The OpenAPI 3 schema, for anyone whose role can read incidents."""

    permission_classes = [HasPerms]
    read_perm = VIEW_INCIDENT
    write_perm = None


class DocsApi(JsonErrorsMixin, SpectacularSwaggerSplitView):
    """Swagger UI. The split view serves its init script from a URL, not inline."""

    permission_classes = [HasPerms]
    read_perm = VIEW_INCIDENT
    write_perm = None
    url_name = "api-schema"


# drf-spectacular's swagger_ui.html has one fixed inline <style> block (box-sizing
# and background). Allowing exactly that block by its hash keeps the site's strict
# style-src; tests/test_api.py recomputes the hash from the rendered page, so an
# upgrade that changes the block fails there instead of silently losing the style.
SWAGGER_STYLE_HASH = "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='"
DOCS_CSP = {
    **settings.SECURE_CSP,
    "style-src": [CSP.SELF, CSP.NONCE, SWAGGER_STYLE_HASH],
}

# Browsers get the login page, not a JSON 401 (DRF views are exempt from
# LoginRequiredMiddleware, so say it here).
docs = login_required(csp_override(DOCS_CSP)(DocsApi.as_view()))


class NotFoundApi(ApiView):
    """Every other /api/ path: a 404 in the error format rather than an HTML page."""

    # Saying "nothing here" needs no permission and reveals nothing.
    permission_classes = [AllowAny]
    read_perm = None
    write_perm = None
    schema = None  # not part of the API description

    def initial(self, request, *args, **kwargs):
        hint = "" if request.path.endswith("/") else f" Did you mean {request.path}/?"
        raise exceptions.NotFound(f"There is no API endpoint at {request.path}.{hint}")
