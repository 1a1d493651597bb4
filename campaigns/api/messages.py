"""Each segment's apology and its versions: list them, write the first version, save the next.

Thin views over campaigns.services.version_create and the selectors (docs/messages.md).
A refused save is a 400 naming the fields as the service does: `content.<locale>.<part>`,
with "Line N: …" for a template the sandbox refuses.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.api.common import (
    DRAFT,
    MESSAGE_ID,
    VIEW_MESSAGE,
    VIEW_VERSION,
    ApprovalStateSerializer,
    ContentField,
    SegmentRefSerializer,
    VersionDetailOutputSerializer,
    VersionListItemSerializer,
    VersionOutputSerializer,
    invalid,
    message_for,
    version_data,
)
from campaigns.models import MessageVersion
from incidents import selectors as incident_selectors
from incidents.access import HasPerms, get_incident_for
from incidents.actors import Actor
from incidents.api.helpers import REFERENCE
from incidents.api_common import ApiView, Pagination, error_responses
from incidents.models import Incident, Segment


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
    data = version_data(request, version)
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
            raise invalid("segment", f"{incident.reference} has no segment {values['segment']}.")
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
        message = message_for(request.user, reference, pk, self.read_perm)
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
        message = message_for(request.user, reference, pk, self.write_perm)
        serializer = VersionCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        based_on = (
            message.versions.filter(pk=values["based_on"]).values_list("number", flat=True).first()
        )
        if based_on is None:
            raise invalid("based_on", f"{values['based_on']} is not a version of this message.")
        version = services.version_create(
            by=Actor.from_request(request), message=message, based_on=based_on, **_draft(values)
        )
        return _created(request, version)
