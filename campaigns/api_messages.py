"""Apologies through the API: each segment's message, its versions, preview, test sends, approval.

Thin views over campaigns.services and campaigns.selectors (docs/messages.md).
A message is addressed under its incident, a version by its id
(/api/versions/{id}/). Every refusal a person can fix is a service
ValidationError, so a 400 names the fields as the service does:
`content.<locale>.<part>` with "Line N: …" for a template the sandbox refuses.
"""

from dataclasses import asdict

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.models import Approval, Message, MessageVersion
from campaigns.rendering import render_version
from incidents import selectors as incident_selectors
from incidents.access import HasPerms, get_incident_for, require
from incidents.actors import Actor
from incidents.api.helpers import REFERENCE, id_parameter
from incidents.api_common import ApiView, Pagination, error_responses
from incidents.models import AffectedPerson, Incident, Segment

VIEW_MESSAGE = "campaigns.view_message"
VIEW_VERSION = "campaigns.view_messageversion"
DRAFT = "campaigns.add_messageversion"
TEST_SEND = "campaigns.test_send_messageversion"
DECIDE = "campaigns.approve_messageversion"
VIEW_PEOPLE = "incidents.view_affectedperson"

MESSAGE_ID = id_parameter("message")
VERSION_ID = id_parameter("version")


def _version_for(user, pk: int, perm: str) -> MessageVersion:
    """Version `pk`, if `user` holds `perm` on its incident (the one access door); 404 if unknown."""
    version = get_object_or_404(
        MessageVersion.objects.select_related("author", "message__incident", "message__segment"),
        pk=pk,
    )
    get_incident_for(user, version.message.incident.reference, perm)
    return version


def _message_for(user, reference: str, pk: int, perm: str) -> Message:
    incident = get_incident_for(user, reference, perm)
    return get_object_or_404(
        Message.objects.select_related("incident", "segment"), incident=incident, pk=pk
    )


def _invalid(field: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [message]})


# --- Content ----------------------------------------------------------------------

_VARIANT_SCHEMA = {
    "type": "object",
    "properties": {
        "subject": {"type": "string", "description": "One line; placeholders allowed."},
        "text": {"type": "string", "description": "Plain text; empty: derived from the HTML."},
        "html": {"type": "string", "description": "Sanitised on save; empty: plain text only."},
    },
    "required": ["subject"],
    "additionalProperties": False,
}


@extend_schema_field(
    {
        "type": "object",
        "description": "One entry per locale (`en`, `de`, `de-at`): its subject, text and HTML.",
        "additionalProperties": _VARIANT_SCHEMA,
        "example": {
            "en": {
                "subject": "We sent you an email by mistake",
                "text": "Dear {{ first_name|default('customer') }}, …",
                "html": "",
            }
        },
    }
)
class ContentField(serializers.JSONField):
    """Passed to the service as sent: it checks every locale and part, with its own messages."""


class VariantOutputSerializer(serializers.Serializer):
    subject = serializers.CharField()
    text = serializers.CharField(help_text="Empty: derived from the HTML when rendered.")
    html = serializers.CharField(help_text="As stored: sanitised. Empty: plain text only.")

    class Meta:
        ref_name = "MessageVariant"


# --- Output -----------------------------------------------------------------------


class SegmentRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()

    class Meta:
        ref_name = "MessageSegmentRef"


class ApprovalStateSerializer(serializers.Serializer):
    """selectors.version_approval_state, recomputed from the stored content on every read."""

    number = serializers.IntegerField(help_text="The version number it describes.")
    needed = serializers.IntegerField(help_text="Approvals required for the incident's severity.")
    have = serializers.IntegerField(help_text="Approvals that count (hash matches, independent).")
    missing = serializers.IntegerField()
    approved = serializers.BooleanField(help_text="Sending needs this to be true.")
    rejected = serializers.BooleanField(help_text="Rejected versions stay stopped for good.")
    content_intact = serializers.BooleanField(
        help_text="The stored content still hashes to `content_hash`."
    )
    is_latest = serializers.BooleanField(help_text="False once a newer version was saved.")

    class Meta:
        ref_name = "ApprovalState"


class VersionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.IntegerField(help_text="1, 2, … within the message.")
    author = serializers.CharField(source="author.username")
    created_at = serializers.DateTimeField()
    locales = serializers.ListField(child=serializers.CharField())
    content_hash = serializers.CharField(help_text="SHA-256 of the version's full content.")
    parent_hash = serializers.CharField(help_text="The previous version's hash; empty for 1.")
    url = serializers.HyperlinkedIdentityField(view_name="api-version-detail")

    class Meta:
        ref_name = "MessageVersionSummary"


class VersionListItemSerializer(VersionOutputSerializer):
    decision_count = serializers.IntegerField(help_text="Approvals and rejections recorded.")

    class Meta:
        ref_name = "MessageVersionListItem"


class ApprovalOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    approver = serializers.CharField(source="approver.username")
    decision = serializers.ChoiceField(choices=Approval.Decision.choices)
    comment = serializers.CharField()
    content_hash = serializers.CharField(help_text="The hash of the content decided on.")
    counts = serializers.BooleanField(
        help_text="An approval that counts towards `needed` (its hash matches now)."
    )
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Approval"


class WarningSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="locale_missing, subject_too_long, link_not_https, text_missing, "
        "render_failed, gdpr_contact_point_missing, gdpr_consequences_missing, "
        "gdpr_measures_missing."
    )
    locale = serializers.CharField()
    message = serializers.CharField()

    class Meta:
        ref_name = "MessageWarning"


class VersionDetailOutputSerializer(VersionOutputSerializer):
    """A version with everything a reviewer needs: content, decisions, state, warnings."""

    message = serializers.IntegerField(source="message_id")
    incident = serializers.CharField(source="message.incident.reference")
    segment = SegmentRefSerializer(source="message.segment")
    sender_name = serializers.CharField()
    sender_address = serializers.CharField()
    reply_to = serializers.CharField()
    fallback_locale = serializers.CharField()
    content = serializers.DictField(child=VariantOutputSerializer())
    approvals = ApprovalOutputSerializer(many=True, source="decided")
    approval_state = ApprovalStateSerializer(source="state")
    warnings = WarningSerializer(many=True, source="warning_list")

    class Meta:
        ref_name = "MessageVersion"


def _version_data(request, version: MessageVersion) -> dict:
    """The detail body: the version with its decisions, approval state and warnings."""
    state = services.version_approval_state(version)
    counting = {decision.approver: decision.counts for decision in state.decisions}
    version.state = state
    version.decided = list(version.approvals.select_related("approver").order_by("created_at"))
    for approval in version.decided:
        approval.counts = counting.get(approval.approver.get_username(), False)
    version.warning_list = selectors.version_warnings(version=version)
    return VersionDetailOutputSerializer(version, context={"request": request}).data


class MessageOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sender_name = serializers.CharField()
    sender_address = serializers.CharField()
    reply_to = serializers.CharField()
    fallback_locale = serializers.CharField()
    version_count = serializers.IntegerField()
    updated_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Message"


class SegmentMessageSerializer(serializers.Serializer):
    """One segment and where its apology stands; `message` is null until the first save."""

    segment = SegmentRefSerializer()
    people = serializers.IntegerField(help_text="People in the segment, not counting removed.")
    message = MessageOutputSerializer(allow_null=True)
    latest_version = VersionOutputSerializer(allow_null=True)
    approval_state = ApprovalStateSerializer(
        allow_null=True, help_text="Of the latest version; null without one."
    )

    class Meta:
        ref_name = "SegmentMessage"


def _segment_messages(incident: Incident) -> list[dict]:
    messages = {m.segment_id: m for m in selectors.message_list(incident=incident)}
    rows = []
    for counted in incident_selectors.segment_counts(incident=incident):
        message = messages.get(counted["segment"].pk)
        latest = selectors.version_latest(message=message) if message else None
        rows.append(
            {
                "segment": counted["segment"],
                "people": counted["people"],
                "message": message,
                "latest_version": latest,
                "approval_state": services.version_approval_state(latest) if latest else None,
            }
        )
    return rows


# --- Input ------------------------------------------------------------------------


class VersionInputSerializer(serializers.Serializer):
    sender_name = serializers.CharField(required=False, allow_blank=True, default="")
    sender_address = serializers.CharField(allow_blank=True)
    reply_to = serializers.CharField(required=False, allow_blank=True, default="")
    fallback_locale = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="The variant for people whose locale has none; default `en`.",
    )
    content = ContentField()

    class Meta:
        ref_name = "MessageVersionInput"


class MessageCreateInputSerializer(VersionInputSerializer):
    segment = serializers.IntegerField(min_value=1, help_text="The segment's id.")

    class Meta:
        ref_name = "MessageCreateInput"


class VersionCreateInputSerializer(VersionInputSerializer):
    based_on = serializers.IntegerField(
        min_value=1,
        help_text="The id of the version you edited. A save based on an older version than "
        "the latest is refused, so no one's changes are lost.",
    )

    class Meta:
        ref_name = "VersionCreateInput"


def _draft(values: dict) -> dict:
    return {
        name: values[name]
        for name in ("sender_name", "sender_address", "reply_to", "fallback_locale", "content")
    }


def _created(request, version: MessageVersion) -> Response:
    data = _version_data(request, version)
    return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})


# --- Messages and versions ----------------------------------------------------------


class MessageListApi(ApiView):
    """Each segment of an incident with its apology; start a segment's apology."""

    permission_classes = [HasPerms]
    read_perm = VIEW_MESSAGE
    write_perm = DRAFT
    pagination_class = Pagination
    parser_classes = [JSONParser]  # content is nested JSON

    @extend_schema(
        operation_id="messages_list",
        summary="List an incident's apologies, per segment",
        description="One entry per segment, in the order segments are tried (the default "
        "last): its message (null until the first save), the latest version and that "
        "version's approval state.",
        tags=["messages"],
        parameters=[REFERENCE],
        responses={200: SegmentMessageSerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        return self.paginated_response(_segment_messages(incident), SegmentMessageSerializer)

    @extend_schema(
        operation_id="messages_create",
        summary="Write the first version of a segment's apology",
        description="Creates the segment's message with version 1. A segment that already "
        "has a message is a 400: post to its versions instead. Checked like every save "
        "(sender, every locale against the sandbox, HTML sanitised). Audited "
        "(`message.created`, `message.version_created`).",
        tags=["messages"],
        parameters=[REFERENCE],
        request=MessageCreateInputSerializer,
        responses={201: VersionDetailOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        serializer = MessageCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        segment = Segment.objects.filter(incident=incident, pk=values["segment"]).first()
        if segment is None:
            raise _invalid("segment", f"{incident.reference} has no segment {values['segment']}.")
        version = services.version_create(
            by=Actor.from_request(request), segment=segment, based_on=0, **_draft(values)
        )
        return _created(request, version)


class VersionListApi(ApiView):
    """A message's versions, newest first; save a new one."""

    permission_classes = [HasPerms]
    read_perm = VIEW_VERSION
    write_perm = DRAFT
    pagination_class = Pagination
    parser_classes = [JSONParser]  # content is nested JSON

    @extend_schema(
        operation_id="message_versions_list",
        summary="List a message's versions",
        tags=["messages"],
        parameters=[REFERENCE, MESSAGE_ID],
        responses={200: VersionListItemSerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str, pk: int):
        message = _message_for(request.user, reference, pk, self.read_perm)
        return self.paginated_response(
            selectors.version_list(message=message), VersionListItemSerializer
        )

    @extend_schema(
        operation_id="message_versions_create",
        summary="Save a new version",
        description="Every save is a new, immutable version that needs its own approval. "
        "`based_on` is the id of the version you edited: when someone saved a newer one in "
        "the meantime, or nothing changed, the save is refused (400). A template the sandbox "
        "refuses is a 400 under `content.<locale>.<part>`, starting with its line; nothing "
        "is saved. Audited (`message.version_created`).",
        tags=["messages"],
        parameters=[REFERENCE, MESSAGE_ID],
        request=VersionCreateInputSerializer,
        responses={201: VersionDetailOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str, pk: int):
        message = _message_for(request.user, reference, pk, self.write_perm)
        serializer = VersionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        based_on = (
            message.versions.filter(pk=values["based_on"]).values_list("number", flat=True).first()
        )
        if based_on is None:
            raise _invalid("based_on", f"{values['based_on']} is not a version of this message.")
        version = services.version_create(
            by=Actor.from_request(request), message=message, based_on=based_on, **_draft(values)
        )
        return _created(request, version)


class VersionDetailApi(ApiView):
    """One version: content, hash, author, decisions, approval state and warnings."""

    permission_classes = [HasPerms]
    read_perm = VIEW_VERSION
    write_perm = None  # versions never change

    @extend_schema(
        operation_id="versions_retrieve",
        summary="Get a version",
        description="`approval_state` is recomputed from the stored content on every read; "
        "`warnings` never block, they tell the reviewer where to look.",
        tags=["messages"],
        parameters=[VERSION_ID],
        responses={200: VersionDetailOutputSerializer, **error_responses(404)},
    )
    def get(self, request, pk: int):
        return Response(_version_data(request, _version_for(request.user, pk, self.read_perm)))


class VersionDiffApi(ApiView):
    """What changed between two versions of a message."""

    permission_classes = [HasPerms]
    read_perm = VIEW_VERSION
    write_perm = None

    class FilterSerializer(serializers.Serializer):
        against = serializers.IntegerField(
            required=False,
            min_value=1,
            help_text="The id of the version to compare with; default the previous one.",
        )

    class OutputSerializer(serializers.Serializer):
        class VersionRefSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            number = serializers.IntegerField()

            class Meta:
                ref_name = "VersionRef"

        class ChangeSerializer(serializers.Serializer):
            locale = serializers.CharField(help_text="Empty for sender settings.")
            field = serializers.CharField(
                help_text="sender_name, sender_address, reply_to, fallback_locale, subject, "
                "text or html."
            )
            lines = serializers.ListField(
                child=serializers.CharField(), help_text="A unified diff, one line each."
            )

            class Meta:
                ref_name = "VersionChange"

        version = VersionRefSerializer()
        against = VersionRefSerializer(
            allow_null=True, help_text="Null for version 1 without `against`: all of it is new."
        )
        changes = ChangeSerializer(many=True, help_text="Only the fields that changed.")

        class Meta:
            ref_name = "VersionDiff"

    @extend_schema(
        operation_id="versions_diff",
        summary="Compare two versions",
        description="From `against` to this version, field by field: sender settings, then "
        "each locale's subject, text and HTML. Both must belong to the same message.",
        tags=["messages"],
        parameters=[VERSION_ID, FilterSerializer],
        responses={200: OutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request, pk: int):
        version = _version_for(request.user, pk, self.read_perm)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data.get("against")
        if wanted is not None:
            against = version.message.versions.filter(pk=wanted).first()
            if against is None:
                raise _invalid("against", f"{wanted} is not a version of this message.")
        else:
            against = version.message.versions.filter(number=version.number - 1).first()
        # Version 1 on its own: compared with an empty, unsaved version 0.
        base = against or MessageVersion(message=version.message, number=0, content={})
        changes = selectors.version_diff(base, version)
        return Response(
            self.OutputSerializer({"version": version, "against": against, "changes": changes}).data
        )


class VersionPreviewApi(ApiView):
    """A version rendered as one person, a random person of its segment, or sample values."""

    permission_classes = [HasPerms]
    read_perm = VIEW_VERSION
    write_perm = None

    class FilterSerializer(serializers.Serializer):
        person_id = serializers.IntegerField(
            required=False, min_value=1, help_text="An affected person of the incident."
        )
        sample = serializers.BooleanField(
            required=False,
            default=False,
            help_text="true: a random person of the version's segment.",
        )
        locale = serializers.CharField(
            required=False,
            max_length=16,
            help_text="The variant to show; default the person's (or the fallback).",
        )

        def validate(self, attrs):
            if attrs.get("person_id") and attrs["sample"]:
                raise serializers.ValidationError("Give person_id or sample=true, not both.")
            return attrs

    class OutputSerializer(serializers.Serializer):
        class PersonSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            locale = serializers.CharField()
            segment = SegmentRefSerializer()

            class Meta:
                ref_name = "PreviewPerson"

        person = PersonSerializer(allow_null=True, help_text="Null: made-up sample values.")
        locale = serializers.CharField(help_text="The variant rendered.")
        fell_back = serializers.BooleanField(
            help_text="The person's locale has no variant; this is the fallback."
        )
        subject = serializers.CharField()
        from_email = serializers.CharField(help_text="The From header.")
        reply_to = serializers.CharField()
        text = serializers.CharField()
        text_derived = serializers.BooleanField(help_text="The text was made from the HTML.")
        html = serializers.CharField(
            help_text="Sanitised and escaped; still show it only in a sandboxed iframe."
        )

        class Meta:
            ref_name = "MessagePreview"

    @extend_schema(
        operation_id="versions_preview",
        summary="Preview a version",
        description="Renders the version through the sandbox as it would reach a person: "
        "`person_id`, or `sample=true` for a random person of the version's segment, or "
        "neither for made-up sample values. The verification code is always the sample "
        "`SAMPLE-0000`. A GET: it changes nothing and is not audited. Rendering a real person "
        "also needs `incidents.view_affectedperson`.",
        tags=["messages"],
        parameters=[VERSION_ID, FilterSerializer],
        responses={200: OutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request, pk: int):
        version = _version_for(request.user, pk, self.read_perm)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        person = None
        if values.get("person_id") or values["sample"]:
            require(request.user, VIEW_PEOPLE)
        if values.get("person_id"):
            person = (
                AffectedPerson.objects.select_related("segment")
                .filter(incident=version.message.incident, pk=values["person_id"])
                .first()
            )
            if person is None:
                raise _invalid("person_id", "No such person on this incident's affected list.")
        elif values["sample"]:
            picked = selectors.affected_sample(segment=version.message.segment, count=1)
            if not picked:
                raise _invalid("sample", f"No one is in “{version.message.segment.name}” yet.")
            person = picked[0]
        locale = values.get("locale")
        if locale and locale.strip().lower() not in version.content:
            raise _invalid("locale", f"Version {version.number} has no “{locale}” variant.")
        rendered = render_version(version=version, person=person, locale=locale or None)
        data = {**asdict(rendered), "person": person}
        return Response(self.OutputSerializer(data).data)


# --- Test sends and approval ----------------------------------------------------------


class VersionTestSendApi(ApiView):
    """Send a version, with sample values, to the internal seed list."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = TEST_SEND

    class InputSerializer(serializers.Serializer):
        addresses = serializers.ListField(
            child=serializers.CharField(max_length=320),
            max_length=50,
            help_text="Seed-list addresses (MESSAGE_TEST_SEED_LIST) only.",
        )
        locales = serializers.ListField(
            child=serializers.CharField(max_length=16),
            required=False,
            help_text="Default: every locale of the version.",
        )

        class Meta:
            ref_name = "TestSendInput"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        version = serializers.IntegerField(source="version_id")
        by = serializers.CharField(source="by.username", allow_null=True)
        address_count = serializers.IntegerField()
        locales = serializers.ListField(child=serializers.CharField())
        message_count = serializers.IntegerField(help_text="Emails sent.")
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "TestSend"

    @extend_schema(
        operation_id="versions_test_send",
        summary="Send a test to the seed list",
        description="One email per address and locale, subject `[TEST] …`, header "
        "`X-Amends-Test: 1`, through the real sending path; never counted as a delivery. "
        "Any address off the seed list refuses the whole send (400 on `addresses`) and "
        "nothing is sent. Audited (`message.test_sent`) with pseudonyms.",
        tags=["messages"],
        parameters=[VERSION_ID],
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, pk: int):
        version = _version_for(request.user, pk, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        test_send = services.version_test_send(
            version=version,
            addresses=serializer.validated_data["addresses"],
            locales=serializer.validated_data.get("locales") or None,
            by=Actor.from_request(request),
        )
        return Response(self.OutputSerializer(test_send).data, status=status.HTTP_201_CREATED)


class VersionRequestApprovalApi(ApiView):
    """Ask Comms to decide on the latest version."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = DRAFT

    class OutputSerializer(serializers.Serializer):
        notified = serializers.ListField(
            child=serializers.CharField(), help_text="The Comms users emailed, by username."
        )
        approval_state = ApprovalStateSerializer()

        class Meta:
            ref_name = "ApprovalRequestResult"

    @extend_schema(
        operation_id="versions_request_approval",
        summary="Ask for approval",
        description="Emails every active Comms user who wrote none of the message and has "
        "not decided yet. Refused (400) for a version that is not the latest, was rejected "
        "or already has its approvals. Audited (`message.approval_requested`).",
        tags=["messages"],
        parameters=[VERSION_ID],
        request=None,
        responses={200: OutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, pk: int):
        version = _version_for(request.user, pk, self.write_perm)
        notified = services.approval_request(version=version, by=Actor.from_request(request))
        data = {
            "notified": [user.get_username() for user in notified],
            "approval_state": services.version_approval_state(version),
        }
        return Response(self.OutputSerializer(data).data)


class _DecisionApi(ApiView):
    permission_classes = [HasPerms]
    read_perm = None
    write_perm = DECIDE

    def decide(self, request, pk: int, service):
        version = _version_for(request.user, pk, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        service(
            version=version,
            comment=serializer.validated_data["comment"],
            by=Actor.from_request(request),
        )
        return Response(_version_data(request, version))


class VersionApproveApi(_DecisionApi):
    """Approve exactly this version's content."""

    class InputSerializer(serializers.Serializer):
        comment = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=5000
        )

        class Meta:
            ref_name = "ApproveInput"

    @extend_schema(
        operation_id="versions_approve",
        summary="Approve a version",
        description="Comms (or Admin) only, and never someone who wrote this version or an "
        "earlier one of the message (400). The approval binds the version's content hash. "
        "The answer is the version with its new approval state. Audited "
        "(`message.version_approved`).",
        tags=["messages"],
        parameters=[VERSION_ID],
        request=InputSerializer,
        responses={200: VersionDetailOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, pk: int):
        return self.decide(request, pk, services.version_approve)


class VersionRejectApi(_DecisionApi):
    """Reject a version, saying what must change."""

    class InputSerializer(serializers.Serializer):
        # Blank is the service's to refuse, with its message for the author.
        comment = serializers.CharField(
            allow_blank=True, max_length=5000, help_text="Required: what needs to change."
        )

        class Meta:
            ref_name = "RejectInput"

    @extend_schema(
        operation_id="versions_reject",
        summary="Reject a version",
        description="Needs a `comment`, which goes to the authors by email. A rejected "
        "version is stopped for good: the author saves a new one. Audited "
        "(`message.version_rejected`).",
        tags=["messages"],
        parameters=[VERSION_ID],
        request=InputSerializer,
        responses={200: VersionDetailOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, pk: int):
        return self.decide(request, pk, services.version_reject)
