"""Files of a pack: written once, hashed while written, counted by rows."""

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.core.serializers.json import DjangoJSONEncoder

from incidents.export.csvsafe import safe_cell

# Bytes gathered before one write: COPY hands over one row at a time.
_FLUSH_BYTES = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One line of the manifest."""

    name: str
    sha256: str
    bytes: int
    rows: int | None

    def as_dict(self) -> dict:
        out = {"name": self.name, "sha256": self.sha256, "bytes": self.bytes}
        if self.rows is not None:
            out["rows"] = self.rows
        return out


class HashedFile:
    """A binary file that keeps the SHA-256 and size of what goes into it."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self.size = 0
        self.rows = 0

    def write(self, data: bytes) -> None:
        if not self._buffer and len(data) >= _FLUSH_BYTES:
            self._write(data)  # a big block (the kept ledger's): no copy into the buffer
            return
        self._buffer += data
        if len(self._buffer) >= _FLUSH_BYTES:
            self.flush()

    def _write(self, data) -> None:
        self._hash.update(data)
        self._file.write(data)
        self.size += len(data)

    def flush(self) -> None:
        if self._buffer:
            self._write(self._buffer)
            self._buffer = bytearray()

    def close(self, *, rows: int | None = None) -> FileEntry:
        self.flush()
        self._file.close()
        return FileEntry(self.path.name, self._hash.hexdigest(), self.size, rows)

    def abort(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


def dumps(value) -> str:
    """Compact JSON, keys in order given, dates as ISO text, non-ASCII kept."""
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))


class CsvWriter:
    """Rows of plain values to a spreadsheet-safe CSV (UTF-8, RFC 4180's CRLF line ends).

    CRLF, not \\n: the csv module quotes a cell only for the characters of its
    line terminator, and a cell holding a lone CR must be quoted too.
    """

    def __init__(self, out: HashedFile, header: Sequence[str], *, lineterminator: str = "\r\n"):
        self.out = out
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator=lineterminator)
        self._csv.writerow(header)
        self._drain()

    def _drain(self) -> None:
        self.out.write(self._text.getvalue().encode())
        self._text.seek(0)
        self._text.truncate()

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        writerow, count = self._csv.writerow, 0
        for row in rows:
            writerow([_csv_value(value) for value in row])
            count += 1
            if count % 2000 == 0:
                self._drain()
        self.out.rows += count
        self._drain()


def _csv_value(value):
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict | list):
        return safe_cell(dumps(value))
    if hasattr(value, "isoformat"):
        return iso(value)
    return safe_cell(str(value))


def iso(value) -> str:
    """A timestamp as UTC ISO 8601 (+00:00), as PostgreSQL's JSON renders it in the ledger."""
    if value is None:
        return ""
    from datetime import UTC

    return value.astimezone(UTC).isoformat()


class JsonlWriter:
    """Rows as JSON objects, one a line."""

    def __init__(self, out: HashedFile, header: Sequence[str]):
        self.out, self.header = out, list(header)

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        header, write, count = self.header, self.out.write, 0
        for row in rows:
            write((dumps(dict(zip(header, row, strict=True))) + "\n").encode())
            count += 1
        self.out.rows += count


def writer_for(fmt: str, out: HashedFile, header: Sequence[str]):
    return CsvWriter(out, header) if fmt == "csv" else JsonlWriter(out, header)
