"""One incident's audience: preview and freeze the list, read and trim it, split it into segments.

Addresses leave only through endpoints whose permission allows seeing people
(view_sendlogentry for the preview's sample, view_affectedperson for the
list); the summary, queries and segments carry counts and rules, no addresses.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.reverse import reverse

from incidents import selectors, services
from incidents.access import HasPerms, get_incident_for
from incidents.actors import Actor
from incidents.api.helpers import (
    REFERENCE,
    CsvParser,
    CursorById,
    TagsField,
    csv_text,
    form_or_query,
    id_parameter,
)
from incidents.api_common import ApiView, Pagination, error_responses
from incidents.filters import RULE_FIELDS, RULE_OPS, STATUSES, AudienceFilter
from incidents.models import AffectedPerson, Incident, Segment

PERSON_ID = id_parameter("affected person")
SEGMENT_ID = id_parameter("segment")


# --- Filters --------------------------------------------------------------------


class AudienceFilterSerializer(serializers.Serializer):
    """What the mis-sent email looked like in the send log. Every condition given must hold."""

    template = serializers.CharField(required=False, allow_blank=True, max_length=200)
    tags = TagsField(required=False)
    sent_from = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Sent at or after."
    )
    sent_until = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Sent before."
    )
    domain = serializers.CharField(
        required=False, allow_blank=True, help_text="Recipients at this domain (IDN allowed)."
    )
    locale = serializers.CharField(required=False, allow_blank=True, max_length=16)
    metadata = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Send log metadata that must match, key by key.",
    )
    # Plain text, checked by AudienceFilter: a `status` enum would collide in the schema.
    status = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=f"The latest ESP status, one of: {', '.join(STATUSES)}.",
    )

    class Meta:
        ref_name = "AudienceFilter"

    def validate(self, attrs):
        # A misspelt key must not silently widen the audience.
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(f"Unknown filter(s): {', '.join(unknown)}.")
        return attrs


def _audience_filter(data) -> AudienceFilter:
    serializer = AudienceFilterSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    # AudienceFilter has the rules of its own (at least a template, tag or window; a
    # window that ends after it starts); its ValidationError is a 400 like ours.
    return AudienceFilter.from_dict(serializer.validated_data)


# --- Output ---------------------------------------------------------------------


class AudienceQueryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    filters = serializers.JSONField(help_text="The filters as stored, normalised.")
    message_count = serializers.IntegerField(help_text="Send log entries the query found.")
    people_count = serializers.IntegerField(help_text="Distinct people the query found.")
    people_added = serializers.IntegerField(help_text="Of those, people new to the list.")
    list_hash = serializers.CharField(
        help_text="SHA-256 of the list after this query: its sorted addresses, one per line."
    )
    status = serializers.CharField(
        help_text="queued or running while a background freeze works; done; failed."
    )
    failure = serializers.CharField(help_text="Why a failed freeze failed (nothing was added).")
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "AudienceQuery"


class SegmentRuleSerializer(serializers.Serializer):
    field = serializers.CharField(
        help_text=f"One of {', '.join(RULE_FIELDS)}, or metadata.<key>.",
    )
    op = serializers.ChoiceField(choices=RULE_OPS, default="eq")
    value = serializers.JSONField(
        required=False, help_text="A list for `in`; true/false for `exists`."
    )

    class Meta:
        ref_name = "SegmentRule"


class SegmentOutputSerializer(serializers.Serializer):
    """A segment with its counts, from selectors.segment_counts."""

    id = serializers.IntegerField(source="segment.id")
    name = serializers.CharField(source="segment.name")
    rules = SegmentRuleSerializer(source="segment.rules", many=True)
    position = serializers.IntegerField(source="segment.position")
    is_default = serializers.BooleanField(
        source="segment.is_default", help_text="The segment that catches everyone else."
    )
    people = serializers.IntegerField(help_text="People in it, not counting removed ones.")
    suppressed = serializers.IntegerField(help_text="Of those, people on the suppression list.")

    class Meta:
        ref_name = "Segment"


class AffectedPersonOutputSerializer(serializers.Serializer):
    class SegmentRefSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()

        class Meta:
            ref_name = "SegmentRef"

    id = serializers.IntegerField()
    address = serializers.CharField(help_text="Normalised: one per person.")
    original_address = serializers.CharField(help_text="As the send log or file had it.")
    customer_id = serializers.CharField()
    locale = serializers.CharField()
    segment = SegmentRefSerializer()
    message_count = serializers.IntegerField()
    message_ids = serializers.ListField(
        child=serializers.CharField(), help_text="The mis-sent messages that reached them."
    )
    first_sent_at = serializers.DateTimeField(allow_null=True)
    is_suppressed = serializers.BooleanField(
        help_text="On the suppression list: reach them another way or waive them."
    )
    removed_at = serializers.DateTimeField(allow_null=True)
    removed_reason = serializers.CharField()

    class Meta:
        ref_name = "AffectedPerson"


def _segment_data(incident: Incident, segment: Segment) -> dict:
    counted = next(
        c for c in selectors.segment_counts(incident=incident) if c["segment"] == segment
    )
    return SegmentOutputSerializer(counted).data


# --- Preview and freeze ---------------------------------------------------------


class AudiencePreviewApi(ApiView):
    """What freezing these filters would find. Changes nothing."""

    permission_classes = [HasPerms]
    # A POST only because the filters are a body; it reads the send log, so it asks
    # for the permission to read it, and writes nothing (not even an audit entry).
    read_perm = None
    write_perm = "incidents.view_sendlogentry"
    parser_classes = [JSONParser]

    class OutputSerializer(serializers.Serializer):
        class LocaleSerializer(serializers.Serializer):
            locale = serializers.CharField()
            people = serializers.IntegerField()
            messages = serializers.IntegerField()

            class Meta:
                ref_name = "AudiencePreviewLocale"

        class SampleSerializer(serializers.Serializer):
            message_id = serializers.CharField()
            recipient = serializers.CharField()
            customer_id = serializers.CharField()
            sent_at = serializers.DateTimeField()
            locale = serializers.CharField()
            status = serializers.CharField()
            template = serializers.CharField()

            class Meta:
                ref_name = "AudiencePreviewSample"

        filters = serializers.JSONField(help_text="The filters as they would be stored.")
        messages = serializers.IntegerField()
        people = serializers.IntegerField()
        by_locale = LocaleSerializer(many=True)
        sample = SampleSerializer(many=True, help_text="The first 20 messages found.")

        class Meta:
            ref_name = "AudiencePreview"

    @extend_schema(
        operation_id="audience_preview",
        summary="Preview an audience",
        description="Counts the messages and distinct people the filters find, per locale, "
        "with a sample of the first messages. A POST because the filters are a body: it "
        "changes nothing and writes no audit entry.",
        tags=["audience"],
        parameters=[REFERENCE],
        request=AudienceFilterSerializer,
        responses={200: OutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        get_incident_for(request.user, reference, self.write_perm)
        preview = selectors.audience_preview(filters=_audience_filter(request.data))
        return Response(self.OutputSerializer(preview).data)


class AudienceFreezeApi(ApiView):
    """Freeze what the filters find into the incident's affected list."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = "incidents.add_audiencequery"
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="audience_freeze",
        summary="Freeze an audience into the affected list",
        description="Adds everyone the filters find to the incident's affected list, once "
        "each, with every message that reached them; people already listed are not added "
        "again (`people_added`). Stores the query and writes an audit entry "
        "(`audience.frozen`) with its counts and the list's hash. A query of more than "
        "`AUDIENCE_FREEZE_INLINE_MAX_MESSAGES` messages (50,000) is frozen by a background "
        "job instead: the answer is 202 with `status` queued; follow it in the queries list.",
        tags=["audience"],
        parameters=[REFERENCE],
        request=AudienceFilterSerializer,
        responses={
            201: AudienceQueryOutputSerializer,
            202: AudienceQueryOutputSerializer,
            **error_responses(400, 404),
        },
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        query = services.audience_freeze_start(
            incident=incident,
            filters=_audience_filter(request.data),
            by=Actor.from_request(request),
        )
        data = AudienceQueryOutputSerializer(query).data
        done = query.status == query.Status.DONE
        return Response(data, status=status.HTTP_201_CREATED if done else status.HTTP_202_ACCEPTED)


class AudienceQueryListApi(ApiView):
    """The audience queries frozen into the incident's list, oldest first."""

    permission_classes = [HasPerms]
    read_perm = "incidents.view_audiencequery"
    write_perm = None
    pagination_class = Pagination

    @extend_schema(
        operation_id="audience_queries_list",
        summary="List an incident's audience queries",
        tags=["audience"],
        parameters=[REFERENCE],
        responses={200: AudienceQueryOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        # One related manager read; a selector when it needs more than this.
        queries = selectors.audience_queries(incident=incident)
        return self.paginated_response(queries, AudienceQueryOutputSerializer)


class AudienceSummaryApi(ApiView):
    """How many people the list holds, in which segments."""

    permission_classes = [HasPerms]
    read_perm = "incidents.view_affectedperson"
    write_perm = None

    class OutputSerializer(serializers.Serializer):
        people = serializers.IntegerField(help_text="On the list, not counting removed ones.")
        removed = serializers.IntegerField()
        queries = serializers.IntegerField(help_text="Audience queries frozen so far.")
        segments = SegmentOutputSerializer(many=True)

        class Meta:
            ref_name = "AudienceSummary"

    @extend_schema(
        operation_id="audience_retrieve",
        summary="Summarise an incident's audience",
        tags=["audience"],
        parameters=[REFERENCE],
        responses={200: OutputSerializer, **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        return Response(self.OutputSerializer(selectors.audience_summary(incident=incident)).data)


# --- The affected list ----------------------------------------------------------


class AffectedListApi(ApiView):
    """The incident's affected people."""

    permission_classes = [HasPerms]
    read_perm = "incidents.view_affectedperson"
    write_perm = None
    pagination_class = CursorById

    class FilterSerializer(serializers.Serializer):
        segment = serializers.IntegerField(required=False, min_value=1, help_text="A segment id.")
        # default=None: DRF reads a missing boolean query parameter as false otherwise.
        suppressed = serializers.BooleanField(
            required=False,
            allow_null=True,
            default=None,
            help_text="true: only suppressed people; false: only the others.",
        )
        search = serializers.CharField(
            required=False, max_length=320, help_text="Part of the address, or a customer id."
        )
        include_removed = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        operation_id="affected_list",
        summary="List an incident's affected people",
        description="In the order they were added, with cursor pagination: follow `next`.",
        tags=["audience"],
        parameters=[REFERENCE, FilterSerializer],
        responses={200: AffectedPersonOutputSerializer(many=True), **error_responses(400, 404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        people = selectors.affected_list(
            incident=incident,
            segment_id=values.get("segment"),
            search=values.get("search", ""),
            suppressed=values["suppressed"],
            include_removed=values["include_removed"],
        )
        return self.paginated_response(people, AffectedPersonOutputSerializer)


class AffectedRemoveApi(ApiView):
    """Take one person off the list, saying why."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = "incidents.change_affectedperson"

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=1000)

        class Meta:
            ref_name = "AffectedRemoveInput"

    @extend_schema(
        operation_id="affected_remove",
        summary="Remove a person from the list",
        description="They stay in the records, marked removed with the reason, and no longer "
        "count or get contacted. Audited (`audience.person_removed`). A person already "
        "removed is a 400.",
        tags=["audience"],
        parameters=[REFERENCE, PERSON_ID],
        request=InputSerializer,
        responses={200: AffectedPersonOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str, pk: int):
        incident = get_incident_for(request.user, reference, self.write_perm)
        person = get_object_or_404(AffectedPerson, incident=incident, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        person = services.affected_remove(
            person=person,
            reason=serializer.validated_data["reason"],
            by=Actor.from_request(request),
        )
        person = selectors.affected_list(incident=incident, include_removed=True).get(pk=person.pk)
        return Response(AffectedPersonOutputSerializer(person).data)


class AffectedImportApi(ApiView):
    """Add people the send log does not know about, from a CSV."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = "incidents.change_affectedperson"
    parser_classes = [MultiPartParser, CsvParser]

    class InputSerializer(serializers.Serializer):
        # Read by csv_text (a text/csv body has no field); described here for the schema.
        file = serializers.FileField(
            required=False, help_text="CSV, UTF-8: address (or email), customer_id, locale."
        )
        note = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=1000,
            help_text="Why these people are added; goes in the audit entry.",
        )

        class Meta:
            ref_name = "AffectedImportInput"

    class OutputSerializer(serializers.Serializer):
        class ProblemSerializer(serializers.Serializer):
            line = serializers.IntegerField(help_text="Line in the file; the header is line 1.")
            reason = serializers.CharField()

            class Meta:
                ref_name = "CsvLineProblem"

        added = serializers.IntegerField()
        already_listed = serializers.IntegerField()
        problems = ProblemSerializer(many=True)

        class Meta:
            ref_name = "AffectedImportResult"

    @extend_schema(
        operation_id="affected_import",
        summary="Add people from a CSV",
        description="A multipart upload (`file`, optional `note`) or the CSV itself as a "
        "`text/csv` body (`note` then in the query string). People already on the list "
        "count as `already_listed`; bad lines are listed in `problems` and the good ones "
        "go in. New people join the segments by the rules. Audited "
        "(`audience.extended_from_file`).",
        tags=["audience"],
        parameters=[
            REFERENCE,
            OpenApiParameter(
                "note", OpenApiTypes.STR, description="With a text/csv body: the audit note."
            ),
        ],
        request={"multipart/form-data": InputSerializer, "text/csv": OpenApiTypes.STR},
        responses={200: OutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        options = self.InputSerializer(data=form_or_query(request))
        options.is_valid(raise_exception=True)
        result = services.affected_add_from_csv(
            incident=incident,
            text=csv_text(request),
            note=options.validated_data["note"],
            by=Actor.from_request(request),
        )
        return Response(self.OutputSerializer(result).data)


# --- Segments -------------------------------------------------------------------


class SegmentInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    rules = SegmentRuleSerializer(
        many=True,
        required=False,
        help_text="All must hold. Segments are tried by `position`; the first match wins.",
    )
    position = serializers.IntegerField(
        required=False, min_value=0, help_text="By default after the last segment."
    )

    class Meta:
        ref_name = "SegmentInput"


class SegmentListApi(ApiView):
    """An incident's segments with their counts; add one."""

    permission_classes = [HasPerms]
    read_perm = "incidents.view_segment"
    write_perm = "incidents.add_segment"
    pagination_class = Pagination
    parser_classes = [JSONParser]  # rules are JSON objects

    @extend_schema(
        operation_id="segments_list",
        summary="List an incident's segments",
        description="In the order they are tried; the default segment last.",
        tags=["segments"],
        parameters=[REFERENCE],
        responses={200: SegmentOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.read_perm)
        return self.paginated_response(
            selectors.segment_counts(incident=incident), SegmentOutputSerializer
        )

    @extend_schema(
        operation_id="segments_create",
        summary="Add a segment",
        description="Then splits the list again, so each person is in exactly one segment. "
        "Audited (`segment.saved`).",
        tags=["segments"],
        parameters=[REFERENCE],
        request=SegmentInputSerializer,
        responses={201: SegmentOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, self.write_perm)
        serializer = SegmentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        segment = services.segment_save(
            incident=incident,
            name=values["name"],
            rules=values.get("rules", []),
            position=values.get("position"),
            by=Actor.from_request(request),
        )
        location = reverse(
            "api-segment-detail",
            kwargs={"reference": incident.reference, "pk": segment.pk},
            request=request,
        )
        return Response(
            _segment_data(incident, segment),
            status=status.HTTP_201_CREATED,
            headers={"Location": location},
        )


class SegmentDetailApi(ApiView):
    """One segment: read, change or delete it."""

    permission_classes = [HasPerms]
    read_perm = "incidents.view_segment"
    # Two writes with two permissions. HasPerms and the 403 message read
    # `write_perm`, so it names the one for this request's method.
    write_perms = {"PATCH": "incidents.change_segment", "DELETE": "incidents.delete_segment"}

    parser_classes = [JSONParser]  # rules are JSON objects

    @property
    def write_perm(self) -> str | None:
        return self.write_perms.get(self.request.method)

    def _segment(self, request, reference: str, pk: int, perm: str) -> tuple[Incident, Segment]:
        incident = get_incident_for(request.user, reference, perm)
        return incident, get_object_or_404(Segment, incident=incident, pk=pk)

    @extend_schema(
        operation_id="segments_retrieve",
        summary="Get a segment",
        tags=["segments"],
        parameters=[REFERENCE, SEGMENT_ID],
        responses={200: SegmentOutputSerializer, **error_responses(404)},
    )
    def get(self, request, reference: str, pk: int):
        incident, segment = self._segment(request, reference, pk, self.read_perm)
        return Response(_segment_data(incident, segment))

    @extend_schema(
        operation_id="segments_partial_update",
        summary="Change a segment",
        description="Send only what changes. Then splits the list again. The default "
        "segment can be renamed but has no rules.",
        tags=["segments"],
        parameters=[REFERENCE, SEGMENT_ID],
        request=SegmentInputSerializer,
        responses={200: SegmentOutputSerializer, **error_responses(400, 404)},
    )
    def patch(self, request, reference: str, pk: int):
        incident, segment = self._segment(request, reference, pk, self.write_perm)
        serializer = SegmentInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        segment = services.segment_save(
            incident=incident,
            segment=segment,
            name=values.get("name", segment.name),
            rules=values.get("rules", segment.rules),
            position=values.get("position"),
            by=Actor.from_request(request),
        )
        return Response(_segment_data(incident, segment))

    @extend_schema(
        operation_id="segments_destroy",
        summary="Delete a segment",
        description="Its people go back through the remaining segments' rules. The default "
        "segment cannot be deleted (400). Audited (`segment.deleted`).",
        tags=["segments"],
        parameters=[REFERENCE, SEGMENT_ID],
        request=None,
        responses={204: None, **error_responses(400, 404)},
    )
    def delete(self, request, reference: str, pk: int):
        _, segment = self._segment(request, reference, pk, self.write_perm)
        services.segment_delete(segment=segment, by=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
