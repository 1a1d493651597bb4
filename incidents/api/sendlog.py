"""The send log through the API: batches of rows, the list, and file imports.

Every way in is idempotent on the ESP message id (services/sendlog.py), so a
client that is unsure whether a batch or an upload arrived may send it again.
"""

from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse

from incidents import selectors, services
from incidents.access import HasPerms
from incidents.actors import Actor
from incidents.addresses import InvalidAddress, normalise
from incidents.api.helpers import CursorById, TagsField, id_parameter
from incidents.api_common import ApiView, Pagination, error_responses
from incidents.models import SendLogImport
from incidents.sendlog_files import FORMATS

VIEW_SENDLOG = "incidents.view_sendlogentry"
VIEW_IMPORTS = "incidents.view_sendlogimport"
IMPORT_SENDLOG = "incidents.import_sendlog"
IMPORT_ID = id_parameter("import")


# --- Output ---------------------------------------------------------------------


class SendLogEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    message_id = serializers.CharField()
    recipient = serializers.CharField(help_text="The address as the ESP reported it.")
    address = serializers.CharField(help_text="The normalised address: one per person.")
    customer_id = serializers.CharField()
    template = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField(), source="tag_list")
    sent_at = serializers.DateTimeField()
    locale = serializers.CharField()
    metadata = serializers.JSONField()
    status = serializers.CharField(help_text="The latest ESP status (sent, delivered, bounced, …).")
    # Plain text: a second `source` enum would need its own ENUM_NAME_OVERRIDES entry.
    source = serializers.CharField(help_text="How it arrived: import, webhook or api.")
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "SendLogEntry"


class SendLogImportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    file_name = serializers.CharField()
    file_format = serializers.CharField(help_text="csv or jsonl.")
    file_size = serializers.IntegerField(help_text="Bytes.")
    column_map = serializers.DictField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=SendLogImport.Status.choices)
    rows_read = serializers.IntegerField()
    rows_inserted = serializers.IntegerField()
    rows_duplicate = serializers.IntegerField(
        help_text="Already in the send log: left as they were."
    )
    rows_rejected = serializers.IntegerField(help_text="Listed in the error report.")
    progress = serializers.FloatField(help_text="Share of the file read so far, 0–1.")
    failure = serializers.CharField(help_text="Why a failed import stopped; empty otherwise.")
    error_report = serializers.SerializerMethodField(
        help_text="Where to download the CSV of rejected rows (line, reason, excerpt); null "
        "when no row was rejected."
    )
    created_by = serializers.CharField(source="created_by.username", allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    url = serializers.HyperlinkedIdentityField(view_name="api-sendlog-import-detail")

    class Meta:
        ref_name = "SendLogImport"

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_error_report(self, obj: SendLogImport) -> str | None:
        if not obj.error_report:
            return None
        return reverse(
            "api-sendlog-import-error-report",
            kwargs={"pk": obj.pk},
            request=self.context["request"],
        )


def _import_response(request, imp: SendLogImport, code: int = status.HTTP_200_OK) -> Response:
    data = SendLogImportOutputSerializer(imp, context={"request": request}).data
    headers = {"Location": data["url"]} if code == status.HTTP_202_ACCEPTED else None
    return Response(data, status=code, headers=headers)


# --- Batches --------------------------------------------------------------------


class _RowSchema(serializers.Serializer):
    """One send log row, for the schema only: the view hands rows to the service unchecked."""

    message_id = serializers.CharField(help_text="The ESP's message id: the idempotency key.")
    recipient = serializers.CharField(help_text="The address the message was sent to.")
    customer_id = serializers.CharField(required=False)
    template = serializers.CharField(required=False, help_text="Template or campaign name.")
    tags = TagsField(required=False)
    sent_at = serializers.DateTimeField(help_text="ISO 8601 with a time zone.")
    locale = serializers.CharField(required=False, help_text="e.g. en, de-AT.")
    metadata = serializers.DictField(required=False, help_text="Flat key/value pairs.")

    class Meta:
        ref_name = "SendLogRowInput"


@extend_schema_field(_RowSchema)
class _RowField(serializers.JSONField):
    """Any JSON value. A bad row is reported by its index; it does not refuse the batch."""


class SendLogBatchApi(ApiView):
    """Add a batch of send log rows."""

    permission_classes = [HasPerms]
    read_perm = None
    write_perm = IMPORT_SENDLOG
    parser_classes = [JSONParser]  # rows are JSON objects

    class InputSerializer(serializers.Serializer):
        rows = serializers.ListField(child=_RowField(), allow_empty=False)

        class Meta:
            ref_name = "SendLogBatchInput"

    class OutputSerializer(serializers.Serializer):
        class RowProblemSerializer(serializers.Serializer):
            index = serializers.IntegerField(help_text="Position in `rows`, from 0.")
            reason = serializers.CharField()

            class Meta:
                ref_name = "SendLogRowProblem"

        received = serializers.IntegerField()
        inserted = serializers.IntegerField()
        duplicate = serializers.IntegerField(help_text="Message ids already in the send log.")
        rejected = serializers.IntegerField()
        errors = RowProblemSerializer(many=True)

        class Meta:
            ref_name = "SendLogBatchResult"

    @extend_schema(
        operation_id="sendlog_batch_create",
        summary="Add send log rows",
        description="Up to SENDLOG_API_MAX_ROWS (default 10,000) rows. Idempotent on "
        "`message_id`: a row already in the log counts as `duplicate` and is left as it "
        "is, so a batch may be sent again safely. Good rows go in even when others are "
        "bad; each bad row is listed in `errors` by its index, with the reason.",
        tags=["send log"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400)},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = services.sendlog_ingest_rows(
            rows=serializer.validated_data["rows"], source="api", by=Actor.from_request(request)
        )
        return Response(self.OutputSerializer(result).data)


# --- The list -------------------------------------------------------------------


class SendLogListApi(ApiView):
    """Read the send log."""

    permission_classes = [HasPerms]
    read_perm = VIEW_SENDLOG
    write_perm = None
    pagination_class = CursorById

    class FilterSerializer(serializers.Serializer):
        template = serializers.CharField(required=False)
        sent_from = serializers.DateTimeField(required=False, help_text="Sent at or after.")
        sent_until = serializers.DateTimeField(required=False, help_text="Sent before.")
        recipient = serializers.CharField(
            required=False,
            help_text="One address; matched as the same person whatever its case, spaces or "
            "IDN form.",
        )

        def validate_recipient(self, value: str) -> str:
            try:
                return normalise(value)
            except InvalidAddress as exc:
                raise serializers.ValidationError(str(exc)) from exc

    @extend_schema(
        operation_id="sendlog_list",
        summary="List the send log",
        description="In the order the rows arrived, with cursor pagination: follow `next`. "
        "There is no total count; the log can hold tens of millions of rows.",
        tags=["send log"],
        parameters=[FilterSerializer],
        responses={200: SendLogEntryOutputSerializer(many=True), **error_responses(400)},
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        values = filters.validated_data
        entries = selectors.sendlog_list(
            template=values.get("template", ""),
            sent_from=values.get("sent_from"),
            sent_until=values.get("sent_until"),
            address=values.get("recipient", ""),
        )
        return self.paginated_response(entries, SendLogEntryOutputSerializer)


# --- File imports ---------------------------------------------------------------


class SendLogImportListApi(ApiView):
    """Upload a send log file to import; list the imports."""

    permission_classes = [HasPerms]
    read_perm = VIEW_IMPORTS
    write_perm = IMPORT_SENDLOG
    pagination_class = Pagination
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="CSV or JSON Lines, UTF-8.")
        format = serializers.ChoiceField(
            choices=FORMATS, required=False, help_text="By default from the file name."
        )
        column_map = serializers.JSONField(
            binary=True,
            required=False,
            help_text='JSON object {field: column}, e.g. {"recipient": "Email", "sent_at": '
            '"Timestamp"}, for columns not named as the fields are.',
        )

        class Meta:
            ref_name = "SendLogImportInput"

        def validate_column_map(self, value):
            if value is None:
                return None
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise serializers.ValidationError(
                    "Give a JSON object of field names to column names."
                )
            return value

    @extend_schema(
        operation_id="sendlog_imports_list",
        summary="List send log imports",
        description="Newest first.",
        tags=["send log"],
        responses={200: SendLogImportOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request):
        return self.paginated_response(
            selectors.sendlog_import_list(), SendLogImportOutputSerializer
        )

    @extend_schema(
        operation_id="sendlog_imports_create",
        summary="Import a send log file",
        description="Stores the file, checks its start (UTF-8 text, a header that fits the "
        "mapping), and queues the import. Answers 202 with the import; poll its `url` for "
        "`status` and `progress`. A file refused at the start is a 400 and nothing is "
        "queued.",
        tags=["send log"],
        request={"multipart/form-data": InputSerializer},
        responses={202: SendLogImportOutputSerializer, **error_responses(400)},
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        imp = services.sendlog_import_start(
            uploaded_file=values["file"],
            file_format=values.get("format", ""),
            column_map=values.get("column_map"),
            by=Actor.from_request(request),
        )
        return _import_response(request, imp, status.HTTP_202_ACCEPTED)


class SendLogImportDetailApi(ApiView):
    """One import: its status, counts and progress."""

    permission_classes = [HasPerms]
    read_perm = VIEW_IMPORTS
    write_perm = None

    @extend_schema(
        operation_id="sendlog_imports_retrieve",
        summary="Get a send log import",
        tags=["send log"],
        parameters=[IMPORT_ID],
        responses={200: SendLogImportOutputSerializer, **error_responses(404)},
    )
    def get(self, request, pk: int):
        return _import_response(request, get_object_or_404(selectors.sendlog_import_list(), pk=pk))


class _AnyAccept(BaseContentNegotiation):
    """Serve the file whatever the client accepts (curl, a browser, `Accept: text/csv`).

    DRF would answer 406 to an Accept its renderers cannot meet; the report is a
    file, not rendered, and errors are always JSON.
    """

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class SendLogImportErrorReportApi(ApiView):
    """The CSV of an import's rejected rows."""

    permission_classes = [HasPerms]
    # The report quotes the start of each rejected line as the file had it, with
    # columns the send log never keeps: importers only, as on the web page.
    read_perm = IMPORT_SENDLOG
    write_perm = None
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _AnyAccept

    @extend_schema(
        operation_id="sendlog_imports_error_report",
        summary="Download an import's error report",
        description="CSV with `line`, `reason` and `excerpt` (the row's first 200 "
        "characters). 404 when the import rejected no row.",
        tags=["send log"],
        parameters=[IMPORT_ID],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The report."),
            **{(code, "application/json"): r for code, r in error_responses(404).items()},
        },
    )
    def get(self, request, pk: int):
        imp = get_object_or_404(SendLogImport, pk=pk)
        path = Path(settings.MEDIA_ROOT) / imp.error_report
        if not imp.error_report or not path.is_file():
            raise Http404("This import has no error report.")
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=f"sendlog-import-{imp.pk}-errors.csv",
            content_type="text/csv; charset=utf-8",
        )
