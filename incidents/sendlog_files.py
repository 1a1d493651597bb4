"""Reading the send log: file formats, column mapping, row validation, error reports.

No database here. `read_batches` turns a CSV or JSON Lines file into batches
of clean rows and rejected lines; `clean_mapping` does the same for one dict
(API batches, webhooks). incidents/services/sendlog.py writes the results.

Memory stays flat for files of any size: lines are read with a bounded
readline, so a line longer than the limit is skipped and reported, never held.
The formats are described for users in docs/sendlog-format.md.
"""

import codecs
import csv
import io
import json
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from incidents.addresses import InvalidAddress, _ascii_domain, normalise
from incidents.models import SendLogEntry

FIELDS = (
    "message_id",
    "recipient",
    "customer_id",
    "template",
    "tags",
    "sent_at",
    "locale",
    "metadata",
)
REQUIRED = ("message_id", "recipient", "sent_at")
FORMATS = ("csv", "jsonl")
EXCERPT_CHARS = 200
# A report listing more rejected rows than this helps nobody; the counts stay exact.
REPORT_MAX_ROWS = 100_000

_MAX = {
    name: SendLogEntry._meta.get_field(name).max_length
    for name in ("message_id", "recipient", "customer_id", "template", "tags", "locale")
}

# (message_id, recipient as received, normalised address, customer_id, template,
#  tags as ";a;b;", sent_at (aware), locale, metadata as JSON object text)
Row = tuple[str, str, str, str, str, str, datetime, str, str]


class SendLogFileError(ValueError):
    """The whole file is refused, before anything was written."""


class RowError(ValueError):
    """One row is refused; the message says why, without repeating its data."""


# --- Column mapping -----------------------------------------------------------


def parse_column_map(text: str) -> dict[str, str]:
    """`recipient=Email,sent_at=Timestamp` → {"recipient": "Email", "sent_at": "Timestamp"}."""
    mapping = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        field, eq, column = part.partition("=")
        if not eq:
            raise SendLogFileError(f"“{part.strip()}” is not FIELD=COLUMN (e.g. recipient=Email).")
        mapping[field.strip()] = column.strip()
    return clean_column_map(mapping)


def clean_column_map(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """Check a {field: column} map: known fields, non-empty column names."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise SendLogFileError(
            f"Unknown field(s) in the column map: {', '.join(unknown)}. "
            f"The fields are: {', '.join(FIELDS)}."
        )
    for field, column in mapping.items():
        if not isinstance(column, str) or not column.strip() or len(column) > 200:
            raise SendLogFileError(f"Name the file's column for {field} (at most 200 characters).")
    return {field: column.strip() for field, column in mapping.items()}


def format_from_name(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise SendLogFileError(
        f"Cannot tell the format of “{Path(name).name}” from its name: say csv or jsonl."
    )


# --- Values -------------------------------------------------------------------

# Plain ASCII addresses, the vast majority. For them this gives exactly what
# normalise() gives, without its per-character checks (about 4 µs a row, the
# largest cost of an import); anything else goes through normalise() itself.
# tests/test_sendlog_import.py checks that the two agree.
_PLAIN_ADDRESS = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64})@([A-Za-z0-9.\-]{1,255})")


def normalise_address(raw: str) -> str:
    match = _PLAIN_ADDRESS.fullmatch(raw)
    if match is None:
        return normalise(raw)
    local, domain = match.groups()
    return f"{local.lower()}@{_ascii_domain(domain)}"


_EPOCH = re.compile(r"\d{9,10}(\.\d{1,9})?")


def parse_sent_at(raw: str) -> datetime:
    """ISO 8601 with a time zone, or Unix seconds. A time without a zone is refused, never guessed."""
    raw = raw.strip()
    if not raw:
        raise RowError("sent_at is empty")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        if _EPOCH.fullmatch(raw):
            return datetime.fromtimestamp(float(raw), UTC)
        raise RowError(
            f"sent_at “{raw[:40]}” is not an ISO 8601 date and time (e.g. 2026-11-28T09:00:00Z)"
        ) from None
    if value.tzinfo is None:
        raise RowError(
            f"sent_at “{raw[:40]}” has no time zone: add Z for UTC or an offset such as +01:00"
        )
    return value


@lru_cache(maxsize=4096)
def clean_tags(raw: str) -> str:
    """`Registry; Gift;;gift` → `;registry;gift;` (lower-cased, de-duplicated, in order)."""
    tags = dict.fromkeys(tag.strip().lower() for tag in raw.split(";"))
    tags.pop("", None)
    text = f";{';'.join(tags)};" if tags else ""
    if len(text) > _MAX["tags"]:
        raise RowError(f"tags are longer than {_MAX['tags']} characters together")
    return text


@lru_cache(maxsize=1024)
def clean_locale(raw: str) -> str:
    locale = raw.strip().lower()
    if len(locale) > _MAX["locale"]:
        raise RowError(f"locale is longer than {_MAX['locale']} characters")
    return locale


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_json_loads = json.JSONDecoder(parse_constant=_no_constant).decode


def _check_text(*values: str) -> None:
    # PostgreSQL text holds neither NUL nor lone surrogates (both only reach us as \u escapes).
    for value in values:
        if "\x00" in value:
            raise RowError("a value contains a NUL character (\\u0000)")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise RowError("a value contains an invalid \\u escape (a lone surrogate)") from None


def clean_metadata(raw: str) -> str:
    """The metadata column: empty, or one JSON object. Returns the JSON text to store."""
    text = raw.strip()
    if not text:
        return "{}"
    if text[0] != "{":
        raise RowError("metadata is not a JSON object")
    try:
        value = _json_loads(text)
    except ValueError as exc:
        raise RowError(f"metadata is not valid JSON ({exc})") from None
    if type(value) is not dict:
        raise RowError("metadata is not a JSON object")
    if "\\u" in text:
        _check_text(json.dumps(value, ensure_ascii=False))
    return text


def clean(
    message_id: str,
    recipient: str,
    customer_id: str,
    template: str,
    tags: str,
    sent_at: str,
    locale: str,
    metadata: str,
) -> Row:
    """Validate one row given as text; raise RowError with the first reason it is refused.

    The recipient is kept exactly as received; `address` is its normalised form.
    """
    message_id = message_id.strip()
    if not message_id:
        raise RowError("message_id is empty")
    if len(message_id) > _MAX["message_id"]:
        raise RowError(f"message_id is longer than {_MAX['message_id']} characters")
    if not message_id.isprintable():
        raise RowError("message_id contains control characters")
    try:
        address = normalise_address(recipient)
    except InvalidAddress as exc:
        raise RowError(f"recipient: {exc}") from None
    if len(recipient) > _MAX["recipient"]:
        raise RowError(f"recipient is longer than {_MAX['recipient']} characters")
    customer_id = customer_id.strip()
    if len(customer_id) > _MAX["customer_id"]:
        raise RowError(f"customer_id is longer than {_MAX['customer_id']} characters")
    template = template.strip()
    if len(template) > _MAX["template"]:
        raise RowError(f"template is longer than {_MAX['template']} characters")
    return (
        message_id,
        recipient,
        address,
        customer_id,
        template,
        clean_tags(tags) if tags else "",
        parse_sent_at(sent_at),
        clean_locale(locale) if locale else "",
        clean_metadata(metadata) if metadata else "{}",
    )


def _lookup(obj: Mapping, key: str) -> Any:
    if key in obj or "." not in key:
        return obj.get(key)
    value: Any = obj  # "message.headers.message-id": a path into nested objects
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _as_text(field: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise RowError(f"{field} is true/false, not text")
    if isinstance(value, int | float):
        return str(value)
    if field == "tags" and isinstance(value, list | tuple):
        if not all(isinstance(tag, str) for tag in value):
            raise RowError("tags is a list, but not of text")
        return ";".join(value)
    if field == "metadata" and isinstance(value, Mapping):
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RowError(f"metadata cannot be stored as JSON ({exc})") from None
    raise RowError(f"{field} is {type(value).__name__}, not text")


def clean_mapping(
    obj: Any, keys: tuple[str, ...] = FIELDS, *, strict: bool = False, check_text: bool = True
) -> Row:
    """Validate one row given as a dict (a JSON Lines object, an API row).

    `keys` names where each of FIELDS is found (a key, or a dotted path into
    nested objects). `strict` refuses keys that are not fields (API typos).
    """
    if not isinstance(obj, Mapping):
        raise RowError("the row is not an object")
    if strict and (unknown := sorted(set(obj) - set(FIELDS), key=str)):
        raise RowError(f"unknown field(s): {', '.join(map(str, unknown))[:200]}")
    values = [_as_text(field, _lookup(obj, key)) for field, key in zip(FIELDS, keys, strict=True)]
    if check_text:
        _check_text(*values)
    return clean(*values)


# --- Files --------------------------------------------------------------------

_MAGIC = (
    (b"\x1f\x8b", "The file is gzip-compressed: decompress it first."),
    (b"PK\x03\x04", "The file is a ZIP archive or an Excel workbook: export it as CSV first."),
    (b"\xd0\xcf\x11\xe0", "The file is an Excel (.xls) workbook: export it as CSV first."),
    (b"%PDF", "The file is a PDF: export the send log as CSV or JSON Lines."),
    (b"\xff\xfe", "The file is UTF-16 text: save it as UTF-8."),
    (b"\xfe\xff", "The file is UTF-16 text: save it as UTF-8."),
)


def check_file(f: BinaryIO, *, max_bytes: int | None = None, chunk: int = 1 << 20) -> None:
    """Refuse a file that is not UTF-8 text, from its first `max_bytes` (default: all of it).

    Run before the first row is written, so a binary or mis-encoded file
    changes nothing. Reads in chunks: memory stays flat.
    """
    head = f.read(min(chunk, max_bytes or chunk))
    if not head.strip():
        raise SendLogFileError("The file is empty.")
    for magic, message in _MAGIC:
        if head.startswith(magic):
            raise SendLogFileError(message)
    if b"\n" not in head and b"\r" in head:
        raise SendLogFileError(
            "The file uses old Mac line endings (CR only): save it with LF or CRLF line endings."
        )
    data, pending, lines_before, total = head, b"", 0, 0
    while data:
        total += len(data)
        nul = data.find(b"\x00")
        if nul >= 0:
            line = lines_before + data.count(b"\n", 0, nul) + 1
            raise SendLogFileError(
                f"The file contains NUL bytes (line {line}): it looks like a binary file, "
                "not CSV or JSON Lines text."
            )
        buffer = pending + data
        try:
            _, consumed = codecs.utf_8_decode(buffer, "strict", False)
        except UnicodeDecodeError as exc:
            line = lines_before + buffer.count(b"\n", 0, exc.start) + 1
            raise SendLogFileError(
                f"The file is not UTF-8 text (first bad byte on line {line}): "
                "save or export it as UTF-8."
            ) from None
        pending = buffer[consumed:]
        lines_before += data.count(b"\n")
        if max_bytes is not None and total >= max_bytes:
            return
        data = f.read(chunk)
    if pending:
        raise SendLogFileError("The file is not UTF-8 text: it ends in the middle of a character.")


class _Lines:
    """The physical lines of a UTF-8 file, never holding more than `limit` bytes of one.

    A longer line is skipped to its end and yielded as an empty line, with
    `problem` saying why, so the caller can report it against its row. For CSV,
    a record (a quoted field may span lines) is held to the same limit.
    """

    def __init__(self, f: BinaryIO, limit: int):
        self.f, self.limit = f, limit
        self.record_bytes = 0  # of the CSV record being read; the caller resets it per record
        self.problem = ""
        self.excerpt = ""

    def __iter__(self) -> Iterator[str]:
        readline, limit = self.f.readline, self.limit
        while raw := readline(limit + 1):
            if len(raw) > limit and not raw.endswith(b"\n"):
                self.problem = f"the line is longer than the limit of {limit} bytes"
                self.excerpt = raw[: EXCERPT_CHARS * 4].decode(errors="replace")[:EXCERPT_CHARS]
                while raw and not raw.endswith(b"\n"):
                    raw = readline(1 << 16)
                yield "\n"
                continue
            self.record_bytes += len(raw)
            if self.record_bytes > limit:
                # A quoted field runs on over lines past the limit: an unclosed quote.
                # Close it here so the CSV reader ends the record; the caller rejects it.
                self.problem = (
                    f"the row is longer than the limit of {limit} bytes (an unclosed quote?)"
                )
                yield '"\n'
                continue
            yield raw.decode()


@dataclass
class Batch:
    rows: list[Row]
    errors: list[tuple[int, str, str]]  # (line, reason, excerpt)
    rows_read: int  # data rows in this batch, good and bad
    position: int  # bytes of the file read so far


def read_batches(
    f: BinaryIO,
    *,
    file_format: str,
    column_map: Mapping[str, str] | None = None,
    batch_rows: int = 50_000,
    max_line_bytes: int = 64 * 1024,
) -> Iterator[Batch]:
    """Clean rows and rejected lines, `batch_rows` at a time.

    Checks the header (or the first JSON object) at once and raises
    SendLogFileError, so a wrong mapping fails before anything is written.
    """
    column_map = clean_column_map(column_map)
    lines = _Lines(f, max_line_bytes)
    if file_format == "csv":
        return _csv_batches(lines, column_map, batch_rows)
    if file_format == "jsonl":
        return _jsonl_batches(lines, column_map, batch_rows)
    raise SendLogFileError(f"“{file_format}” is not a send log format: say csv or jsonl.")


def _excerpt_fields(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()[:EXCERPT_CHARS]


def _delimiter(header_line: str) -> str:
    # Excel in many European locales writes ";" and some tools write tabs.
    counts = {sep: header_line.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _columns(header: list[str], column_map: Mapping[str, str]) -> list[int | None]:
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        positions.setdefault(name.strip().lower(), index)
    found, missing_mapped, missing = [], [], []
    for field in FIELDS:
        column = column_map.get(field, field)
        index = positions.get(column.lower())
        if index is None and field in column_map:
            missing_mapped.append(f"“{column}” (for {field})")
        elif index is None and field in REQUIRED:
            missing.append(field)
        found.append(index)
    if missing_mapped:
        raise SendLogFileError(f"The file has no column {', '.join(missing_mapped)}.")
    if missing:
        if any("@" in name for name in header):
            raise SendLogFileError(
                "The first line holds an e-mail address, so it is not a header: the file must "
                f"start with a line naming its columns ({', '.join(FIELDS)})."
            )
        names = ", ".join(name.strip()[:40] for name in header[:20])
        raise SendLogFileError(
            f"The file has no {' or '.join(missing)} column. Its columns are: {names}. "
            "Rename them, or map them (e.g. recipient=Email)."
        )
    return found


def _csv_batches(lines: _Lines, column_map: Mapping[str, str], batch_rows: int) -> Iterator[Batch]:
    line_iter = iter(lines)
    first = next(line_iter, "")
    if lines.problem:
        raise SendLogFileError(f"The header line is too long: {lines.problem}.")
    first = first.removeprefix("\ufeff")
    reader = csv.reader(chain([first], line_iter), delimiter=_delimiter(first))
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise SendLogFileError(f"The header line is not valid CSV: {exc}.") from None
    if not header or not any(name.strip() for name in header):
        raise SendLogFileError("The first line is empty: the file must start with a header line.")
    ncols = len(header)
    # An absent optional column reads as the "" appended to every row.
    getter = operator.itemgetter(*(ncols if i is None else i for i in _columns(header, column_map)))
    csv.field_size_limit(max(csv.field_size_limit(), 2 * lines.limit))
    return _csv_rows(reader, lines, getter, ncols, batch_rows)


def _csv_rows(
    reader: Any, lines: _Lines, getter: Callable, ncols: int, batch_rows: int
) -> Iterator[Batch]:
    f = lines.f
    rows: list[Row] = []
    errors: list[tuple[int, str, str]] = []
    read = 0
    end = reader.line_num
    lines.record_bytes, lines.problem = 0, ""
    while True:
        try:
            for row in reader:
                line, end = end + 1, reader.line_num
                lines.record_bytes = 0
                if lines.problem:
                    errors.append((line, lines.problem, lines.excerpt or _excerpt_fields(row)))
                    lines.problem = lines.excerpt = ""
                elif len(row) == ncols:
                    row.append("")
                    try:
                        rows.append(clean(*getter(row)))
                    except RowError as exc:
                        errors.append((line, str(exc), _excerpt_fields(row[:-1])))
                elif not row:
                    continue  # a blank line
                else:
                    reason = f"the row has {len(row)} fields; the header has {ncols}"
                    errors.append((line, reason, _excerpt_fields(row)))
                read += 1
                if read >= batch_rows:
                    yield Batch(rows, errors, read, f.tell())
                    rows, errors, read = [], [], 0
            break
        except csv.Error as exc:
            line, end = end + 1, reader.line_num
            lines.record_bytes, lines.problem, lines.excerpt = 0, "", ""
            errors.append((line, f"the row is not valid CSV ({exc})", ""))
            read += 1
    if read:
        yield Batch(rows, errors, read, f.tell())


def _jsonl_batches(
    lines: _Lines, column_map: Mapping[str, str], batch_rows: int
) -> Iterator[Batch]:
    # The first object is checked before any row is written: a file that is not
    # JSON Lines, or a mapping that does not fit it, changes nothing.
    keys = tuple(column_map.get(field, field) for field in FIELDS)
    lines.record_bytes = -(1 << 62)  # records are single lines: only the line limit applies
    line_iter = iter(lines)
    line = 0
    for text in line_iter:
        line += 1
        if lines.problem:
            raise SendLogFileError(f"Line {line}: {lines.problem}.")
        text = text.removeprefix("\ufeff") if line == 1 else text
        if text and not text.isspace():
            break
    else:
        raise SendLogFileError("The file holds no JSON objects.")
    try:
        obj = _json_loads(text)
    except ValueError:
        obj = None
    if type(obj) is not dict:
        raise SendLogFileError(
            f"Line {line} is not a JSON object: a JSON Lines file holds one object a line."
        )
    absent = [
        field
        for field, key in zip(FIELDS, keys, strict=True)
        if field in REQUIRED and _lookup(obj, key) is None
    ]
    if absent:
        names = ", ".join(f"“{keys[FIELDS.index(field)]}” (for {field})" for field in absent)
        raise SendLogFileError(f"The first object (line {line}) has no key {names}.")
    return _jsonl_rows(chain([text], line_iter), line - 1, lines, keys, batch_rows)


def _jsonl_rows(
    texts: Iterator[str], line: int, lines: _Lines, keys: tuple[str, ...], batch_rows: int
) -> Iterator[Batch]:
    f = lines.f
    rows: list[Row] = []
    errors: list[tuple[int, str, str]] = []
    read = 0
    for text in texts:
        line += 1
        if lines.problem:
            errors.append((line, lines.problem, lines.excerpt))
            lines.problem = lines.excerpt = ""
        elif not text or text.isspace():
            continue
        else:
            try:
                obj = _json_loads(text)
                if type(obj) is not dict:
                    raise RowError("the line is not a JSON object")
                rows.append(clean_mapping(obj, keys, check_text="\\u" in text))
            except RowError as exc:
                errors.append((line, str(exc), text.rstrip("\r\n")[:EXCERPT_CHARS]))
            except ValueError as exc:
                reason = f"the line is not valid JSON ({exc})"
                errors.append((line, reason, text.rstrip("\r\n")[:EXCERPT_CHARS]))
        read += 1
        if read >= batch_rows:
            yield Batch(rows, errors, read, f.tell())
            rows, errors, read = [], [], 0
    if read:
        yield Batch(rows, errors, read, f.tell())


def check_head(f: BinaryIO, *, file_format: str, column_map: Mapping[str, str] | None) -> None:
    """Quick refusal of an upload: its first megabyte is UTF-8 and its header fits the mapping."""
    check_file(f, max_bytes=1 << 20)
    f.seek(0)
    next(read_batches(f, file_format=file_format, column_map=column_map, batch_rows=1), None)


# --- Error report -------------------------------------------------------------


def _cell(value: str) -> str:
    # A leading =, +, - or @ makes spreadsheets run the cell as a formula.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class ErrorReport:
    """The downloadable CSV of rejected rows: line, reason, excerpt (first 200 characters).

    Created on the first rejected row; at most REPORT_MAX_ROWS rows are listed.
    """

    def __init__(self, path: Path):
        self.path = path
        self.listed = 0
        self.omitted = 0
        self._file: io.TextIOWrapper | None = None
        self._writer: Any = None

    @property
    def exists(self) -> bool:
        return self._file is not None

    def add(self, errors: list[tuple[int, str, str]]) -> None:
        if not errors:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", "excerpt"])
        room = max(REPORT_MAX_ROWS - self.listed, 0)
        self._writer.writerows(
            (line, reason, _cell(excerpt[:EXCERPT_CHARS]))
            for line, reason, excerpt in errors[:room]
        )
        self.listed += min(room, len(errors))
        self.omitted += max(len(errors) - room, 0)
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        if self.omitted:
            self._writer.writerow(["", f"{self.omitted} more rejected rows are not listed", ""])
        self._file.close()
