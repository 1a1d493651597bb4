"""The suppression list through the API: read it, add to it, import a file, lift an entry.

Lifting a suppression means the address may be e-mailed again, so it is the
Admin role's alone (campaigns.delete_suppression) and needs a reason.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from campaigns import selectors, services
from campaigns.models import Suppression
from incidents.access import HasPerms
from incidents.actors import Actor
from incidents.api.helpers import (
    CsvParser,
    NewestFirst,
    csv_text,
    form_or_query,
    id_parameter,
)
from incidents.api_common import ApiView, error_responses

VIEW_SUPPRESSION = "campaigns.view_suppression"
ADD_SUPPRESSION = "campaigns.add_suppression"
SUPPRESSION_ID = id_parameter("suppression")


class SuppressionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    address = serializers.CharField(help_text="Normalised.")
    reason = serializers.ChoiceField(choices=Suppression.Reason.choices)
    # Plain text: a second `source` enum would need its own ENUM_NAME_OVERRIDES entry.
    source = serializers.CharField(help_text="How it arrived: import, webhook, manual or api.")
    note = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Suppression"


class SuppressionListApi(ApiView):
    """The suppression list; add an address to it."""

    permission_classes = [HasPerms]
    read_perm = VIEW_SUPPRESSION
    write_perm = ADD_SUPPRESSION
    pagination_class = NewestFirst

    class FilterSerializer(serializers.Serializer):
        search = serializers.CharField(required=False, help_text="Part of the address.")
        reason = serializers.ChoiceField(choices=Suppression.Reason.choices, required=False)

    class InputSerializer(serializers.Serializer):
        address = serializers.CharField(max_length=320)
        reason = serializers.ChoiceField(choices=Suppression.Reason.choices)
        note = serializers.CharField(required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "SuppressionInput"

    @extend_schema(
        operation_id="suppressions_list",
        summary="List suppressions",
        description="Newest first, with cursor pagination: follow `next`.",
        tags=["suppressions"],
        parameters=[FilterSerializer],
        responses={200: SuppressionOutputSerializer(many=True), **error_responses(400)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        suppressions = selectors.suppression_list(
            search=values.get("search", ""), reason=values.get("reason", "")
        )
        return self.paginated_response(suppressions, SuppressionOutputSerializer)

    @extend_schema(
        operation_id="suppressions_create",
        summary="Suppress an address",
        description="201 with the new entry; 200 with the existing one when the address was "
        "already suppressed (kept as it was). Audited with a pseudonym, never the address.",
        tags=["suppressions"],
        request=InputSerializer,
        responses={
            201: SuppressionOutputSerializer,
            200: SuppressionOutputSerializer,
            **error_responses(400),
        },
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        suppression, created = services.suppression_add(
            **serializer.validated_data,
            source=Suppression.Source.API,
            by=Actor.from_request(request),
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(SuppressionOutputSerializer(suppression).data, status=code)


class SuppressionImportApi(ApiView):
    """Add suppressions from a CSV."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = ADD_SUPPRESSION
    parser_classes = [MultiPartParser, CsvParser]

    class InputSerializer(serializers.Serializer):
        # Read by csv_text (a text/csv body has no field); described here for the schema.
        file = serializers.FileField(
            required=False,
            help_text="CSV, UTF-8: address (or email), and optionally reason and note.",
        )
        # Text, not a second enum over the reasons (the schema would name the same
        # choices twice); checked below.
        default_reason = serializers.CharField(
            required=False,
            help_text=f"For rows without a reason: one of {', '.join(Suppression.Reason.values)}.",
        )

        class Meta:
            ref_name = "SuppressionImportInput"

        def validate_default_reason(self, value: str) -> str:
            if value not in Suppression.Reason.values:
                raise serializers.ValidationError(f"“{value}” is not a suppression reason.")
            return value

    class OutputSerializer(serializers.Serializer):
        class ProblemSerializer(serializers.Serializer):
            line = serializers.IntegerField()
            reason = serializers.CharField()

            class Meta:
                ref_name = "SuppressionImportProblem"

        added = serializers.IntegerField()
        already_suppressed = serializers.IntegerField()
        problems = ProblemSerializer(many=True)

        class Meta:
            ref_name = "SuppressionImportResult"

    @extend_schema(
        operation_id="suppressions_import",
        summary="Import suppressions from a CSV",
        description="A multipart upload (`file`, `default_reason`) or the CSV itself as a "
        "`text/csv` body (`default_reason` then in the query string). Existing entries are "
        "kept as they are; bad lines are listed in `problems` and the good ones go in.",
        tags=["suppressions"],
        parameters=[
            OpenApiParameter(
                "default_reason",
                OpenApiTypes.STR,
                enum=Suppression.Reason.values,
                description="With a text/csv body: the reason for rows without one.",
            )
        ],
        request={"multipart/form-data": InputSerializer, "text/csv": OpenApiTypes.STR},
        responses={200: OutputSerializer, **error_responses(400)},
    )
    def post(self, request):
        options = self.InputSerializer(data=form_or_query(request))
        options.is_valid(raise_exception=True)
        result = services.suppression_import(
            text=csv_text(request),
            default_reason=options.validated_data.get("default_reason", ""),
            by=Actor.from_request(request),
        )
        return Response(self.OutputSerializer(result).data)


class SuppressionDetailApi(ApiView):
    """One suppression: read it, or lift it (Admin only)."""

    permission_classes = [HasPerms]
    read_perm = VIEW_SUPPRESSION
    write_perm = "campaigns.delete_suppression"
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            max_length=1000, help_text="Why this address may be e-mailed again."
        )

        class Meta:
            ref_name = "SuppressionRemoveInput"

    @extend_schema(
        operation_id="suppressions_retrieve",
        summary="Get a suppression",
        tags=["suppressions"],
        parameters=[SUPPRESSION_ID],
        responses={200: SuppressionOutputSerializer, **error_responses(404)},
    )
    def get(self, request, pk: int):
        suppression = get_object_or_404(Suppression.objects.select_related("created_by"), pk=pk)
        return Response(SuppressionOutputSerializer(suppression).data)

    @extend_schema(
        operation_id="suppressions_destroy",
        summary="Lift a suppression",
        description="The address may be e-mailed again. Needs a `reason` in the body, which "
        "goes in the audit entry (`suppression.removed`).",
        tags=["suppressions"],
        parameters=[SUPPRESSION_ID],
        request=InputSerializer,
        responses={204: None, **error_responses(400, 404)},
    )
    def delete(self, request, pk: int):
        suppression = get_object_or_404(Suppression, pk=pk)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.suppression_remove(
            suppression=suppression,
            reason=serializer.validated_data["reason"],
            by=Actor.from_request(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
