"""One version: read it, compare it, preview it, test-send it, ask for approval, decide on it.

Thin views over campaigns.services and campaigns.selectors (docs/messages.md). The
preview is a GET with query parameters: it changes nothing and is not audited.
"""

from dataclasses import asdict

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.api.common import (
    DECIDE,
    DRAFT,
    TEST_SEND,
    VERSION_ID,
    VIEW_PEOPLE,
    VIEW_VERSION,
    ApprovalStateSerializer,
    SegmentRefSerializer,
    VersionDetailOutputSerializer,
    invalid,
    version_data,
    version_for,
)
from campaigns.models import MessageVersion
from campaigns.rendering import render_version
from incidents.access import HasPerms, require
from incidents.actors import Actor
from incidents.api_common import ApiView, error_responses
from incidents.models import AffectedPerson


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
        return Response(version_data(request, version_for(request.user, pk, self.read_perm)))


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
        version = version_for(request.user, pk, self.read_perm)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data.get("against")
        if wanted is not None:
            against = version.message.versions.filter(pk=wanted).first()
            if against is None:
                raise invalid("against", f"{wanted} is not a version of this message.")
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
        version = version_for(request.user, pk, self.read_perm)
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
                raise invalid("person_id", "No such person on this incident's affected list.")
        elif values["sample"]:
            picked = selectors.affected_sample(segment=version.message.segment, count=1)
            if not picked:
                raise invalid("sample", f"No one is in “{version.message.segment.name}” yet.")
            person = picked[0]
        locale = values.get("locale")
        if locale and locale.strip().lower() not in version.content:
            raise invalid("locale", f"Version {version.number} has no “{locale}” variant.")
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
        version = version_for(request.user, pk, self.write_perm)
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
        version = version_for(request.user, pk, self.write_perm)
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
        version = version_for(request.user, pk, self.write_perm)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        service(
            version=version,
            comment=serializer.validated_data["comment"],
            by=Actor.from_request(request),
        )
        return Response(version_data(request, version))


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
