"""What the messages API modules share: permissions, access to a version, the output serializers.

A message is addressed under its incident, a version by its id (/api/versions/{id}/);
both go through access.get_incident_for, the one access door.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from campaigns import selectors, services
from campaigns.models import Approval, Message, MessageVersion
from incidents.access import get_incident_for
from incidents.api.helpers import id_parameter

VIEW_MESSAGE = "campaigns.view_message"
VIEW_VERSION = "campaigns.view_messageversion"
DRAFT = "campaigns.add_messageversion"
TEST_SEND = "campaigns.test_send_messageversion"
DECIDE = "campaigns.approve_messageversion"
VIEW_PEOPLE = "incidents.view_affectedperson"

MESSAGE_ID = id_parameter("message")
VERSION_ID = id_parameter("version")


def version_for(user, pk: int, perm: str) -> MessageVersion:
    """Version `pk`, if `user` holds `perm` on its incident (the one access door); 404 if unknown."""
    version = get_object_or_404(
        MessageVersion.objects.select_related("author", "message__incident", "message__segment"),
        pk=pk,
    )
    get_incident_for(user, version.message.incident.reference, perm)
    return version


def message_for(user, reference: str, pk: int, perm: str) -> Message:
    incident = get_incident_for(user, reference, perm)
    return get_object_or_404(
        Message.objects.select_related("incident", "segment"), incident=incident, pk=pk
    )


def invalid(field: str, message: str) -> exceptions.ValidationError:
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


def version_data(request, version: MessageVersion) -> dict:
    """The detail body: the version with its decisions, approval state and warnings."""
    state = services.version_approval_state(version)
    counting = {decision.approver: decision.counts for decision in state.decisions}
    version.state = state
    version.decided = list(version.approvals.select_related("approver").order_by("created_at"))
    for approval in version.decided:
        approval.counts = counting.get(approval.approver.get_username(), False)
    version.warning_list = selectors.version_warnings(version=version)
    return VersionDetailOutputSerializer(version, context={"request": request}).data
