"""What several API modules share: the incident path parameter, cursor pagination, CSV bodies."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import BaseParser

REFERENCE = OpenApiParameter(
    "reference",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The incident reference, e.g. INC-2026-0001.",
)


def id_parameter(what: str) -> OpenApiParameter:
    # "id": drf-spectacular shows a `pk` path variable as `id` (SCHEMA_COERCE_PATH_PK).
    return OpenApiParameter(
        "id", OpenApiTypes.INT, OpenApiParameter.PATH, description=f"The {what}'s id."
    )


class CursorById(CursorPagination):
    """`?cursor=…&page_size=…` in id order, for lists that can hold millions of rows.

    No COUNT(*) and no OFFSET: each page is one indexed range scan from where the
    last one stopped, so page 10,000 costs what page 1 does, and rows added while
    a client pages through never shift what it sees.
    """

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class NewestFirst(CursorById):
    ordering = "-id"


# Room for the largest files the CSV services take (1,000,000 suppressions, 100,000 extra
# people). They hold the whole text in memory, so the bound is checked before decoding.
MAX_CSV_BYTES = 64 * 1024 * 1024


class CsvParser(BaseParser):
    """A `text/csv` body, as bytes; `csv_text` decodes and checks it."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        # One byte over the limit is enough to refuse it; never hold more.
        return stream.read(MAX_CSV_BYTES + 1)


def sent_as_csv_body(request) -> bool:
    return isinstance(request.data, bytes)


def _too_big(field: str) -> exceptions.ValidationError:
    return exceptions.ValidationError(
        {field: [f"The file is larger than {MAX_CSV_BYTES // 1024**2} MiB: split it."]}
    )


def csv_text(request, field: str = "file") -> str:
    """The CSV sent as the multipart field `file` or as a text/csv body, decoded from UTF-8."""
    if sent_as_csv_body(request):
        raw = request.data
    else:
        upload = request.data.get(field) if hasattr(request.data, "get") else None
        if upload is None or upload == "":
            raise exceptions.ValidationError(
                {field: ["Send the CSV as the multipart field “file”, or as a text/csv body."]}
            )
        if isinstance(upload, str):
            raw = upload.encode()
        elif upload.size is not None and upload.size > MAX_CSV_BYTES:
            raise _too_big(field)
        else:
            raw = upload.read()
    if len(raw) > MAX_CSV_BYTES:
        raise _too_big(field)
    try:
        return raw.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError:
        raise exceptions.ValidationError(
            {field: ["The file is not UTF-8 text: save it as CSV UTF-8."]}
        ) from None


def form_or_query(request):
    """The other fields of an upload: the multipart form, or the query string with a CSV body."""
    return request.query_params if sent_as_csv_body(request) else request.data


@extend_schema_field(
    {
        "oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}],
        "description": "A list of tags, or one text with the tags separated by ; or ,.",
    }
)
class TagsField(serializers.Field):
    """Tags as a list of text, or as one text separated by ; or , (as the files carry them)."""

    default_error_messages = {
        "invalid": "Give tags as a list of text, or as one text separated by ; or ,."
    }

    def to_internal_value(self, data):
        if isinstance(data, str):
            return data
        if isinstance(data, list) and all(isinstance(tag, str) for tag in data):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value
