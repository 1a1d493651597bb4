"""Evidence packs through the API: request one, poll it, download it.

Auditors and admins export (incidents.export_evidence); a pack with addresses
needs incidents.export_pii and a reason, and so does downloading one. Every
request, pack and download is in the audit trail.
"""

from django.core.exceptions import ValidationError
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse

from incidents.access import HasPerms, get_incident_for, require
from incidents.actors import Actor
from incidents.api.helpers import REFERENCE, id_parameter
from incidents.api.sendlog import _AnyAccept
from incidents.api_common import ApiView, Conflict, ErrorSerializer, Pagination, error_responses
from incidents.export import services
from incidents.export.pack import FORMATS
from incidents.models import EvidenceExport

EXPORT_EVIDENCE = "incidents.export_evidence"
EXPORT_PII = "incidents.export_pii"
EXPORT_ID = id_parameter("export")


class Gone(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This pack has expired and its files are deleted."
    default_code = "expired"


class ExportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    incident = serializers.CharField(source="incident.reference")
    format = serializers.ChoiceField(choices=EvidenceExport.Format.choices)
    pii = serializers.BooleanField(help_text="True when the pack holds addresses.")
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=EvidenceExport.Status.choices)
    progress = serializers.FloatField(help_text="Share of the ledger written, 0–1.")
    rows_total = serializers.IntegerField(help_text="Affected people to write.")
    rows_done = serializers.IntegerField()
    size_bytes = serializers.IntegerField(help_text="Size of the zip, once ready.")
    sha256 = serializers.CharField(help_text="SHA-256 of the pack's manifest.json, once ready.")
    head_seq = serializers.IntegerField(allow_null=True, help_text="Audit chain head at export.")
    head_hash = serializers.CharField()
    failure = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()
    url = serializers.HyperlinkedIdentityField(view_name="api-export-detail")
    download = serializers.SerializerMethodField(
        help_text="Where to download the zip; null until it is ready, and after it expires."
    )

    class Meta:
        ref_name = "EvidenceExport"

    def get_download(self, obj: EvidenceExport) -> str | None:
        if not obj.downloadable:
            return None
        return reverse(
            "api-export-download", kwargs={"pk": obj.pk}, request=self.context["request"]
        )


def _response(request, export, code=status.HTTP_200_OK) -> Response:
    data = ExportOutputSerializer(export, context={"request": request}).data
    headers = {"Location": data["url"]} if code == status.HTTP_202_ACCEPTED else None
    return Response(data, status=code, headers=headers)


class ExportListApi(ApiView):
    """An incident's evidence packs: request one, list them."""

    permission_classes = [HasPerms]
    read_perm = EXPORT_EVIDENCE
    write_perm = EXPORT_EVIDENCE
    pagination_class = Pagination
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=FORMATS)
        pii = serializers.BooleanField(
            default=False,
            help_text="Include addresses and names (needs incidents.export_pii and a reason).",
        )
        reason = serializers.CharField(required=False, allow_blank=True, default="")

        class Meta:
            ref_name = "EvidenceExportInput"

    @extend_schema(
        operation_id="exports_list",
        summary="List an incident's evidence packs",
        description="Newest first, with their status and expiry.",
        tags=["evidence"],
        parameters=[REFERENCE],
        responses={200: ExportOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request, reference: str):
        incident = get_incident_for(request.user, reference, EXPORT_EVIDENCE)
        exports = incident.evidence_exports.select_related("incident", "created_by")
        return self.paginated_response(exports, ExportOutputSerializer)

    @extend_schema(
        operation_id="exports_create",
        summary="Request an evidence pack",
        description="Queues the pack and answers 202; poll its `url` until `status` is "
        "`done`, then fetch `download`. Addresses are pseudonymised unless `pii` is true, "
        "which needs incidents.export_pii (403 otherwise) and a `reason` (400 otherwise).",
        tags=["evidence"],
        parameters=[REFERENCE],
        request=InputSerializer,
        responses={202: ExportOutputSerializer, **error_responses(400, 404)},
    )
    def post(self, request, reference: str):
        incident = get_incident_for(request.user, reference, EXPORT_EVIDENCE)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        if values["pii"]:
            require(request.user, EXPORT_PII)
        export = services.export_request(
            incident=incident,
            fmt=values["format"],
            pii=values["pii"],
            reason=values["reason"],
            by=Actor.from_request(request),
        )
        return _response(request, export, status.HTTP_202_ACCEPTED)


class ExportDetailApi(ApiView):
    """One evidence pack: its status, progress and hashes."""

    permission_classes = [HasPerms]
    read_perm = EXPORT_EVIDENCE
    write_perm = None

    @extend_schema(
        operation_id="exports_retrieve",
        summary="Get an evidence pack",
        tags=["evidence"],
        parameters=[EXPORT_ID],
        responses={200: ExportOutputSerializer, **error_responses(404)},
    )
    def get(self, request, pk: int):
        export = get_object_or_404(
            EvidenceExport.objects.select_related("incident", "created_by"), pk=pk
        )
        return _response(request, export)


class ExportDownloadApi(ApiView):
    """The zip of a finished pack."""

    permission_classes = [HasPerms]
    read_perm = EXPORT_EVIDENCE
    write_perm = None
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _AnyAccept

    @extend_schema(
        operation_id="exports_download",
        summary="Download an evidence pack",
        description="A zip of the pack's directory (manifest.json and its files). Audited. "
        "A pack with addresses needs incidents.export_pii. 409 `not_ready` before it is "
        "done; 410 `expired` after EXPORT_TTL_DAYS.",
        tags=["evidence"],
        parameters=[EXPORT_ID],
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="The zip."),
            **{(c, "application/json"): r for c, r in error_responses(404, 409).items()},
            (410, "application/json"): OpenApiResponse(
                ErrorSerializer, description="The pack expired (`expired`)."
            ),
        },
    )
    def get(self, request, pk: int):
        export = get_object_or_404(EvidenceExport.objects.select_related("incident"), pk=pk)
        if export.pii:
            require(request.user, EXPORT_PII)
        if export.is_expired():
            raise Gone()
        if export.status != EvidenceExport.Status.DONE:
            raise Conflict(
                "This pack is not ready yet: poll it until its status is done.", code="not_ready"
            )
        try:
            path = services.export_download(export=export, by=Actor.from_request(request))
        except ValidationError as exc:  # its files are gone
            raise exceptions.NotFound(" ".join(exc.messages)) from exc
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=path.name,
            content_type="application/zip",
        )
