"""Spreadsheet-safe CSV: no cell a spreadsheet would run as a formula, and nothing lost.

Checked with a fuzzed corpus (hypothesis): text built from the characters that
start formulas, quotes, separators, line breaks, NUL and arbitrary Unicode,
written by the pack's CSV writer (and, on PostgreSQL, by the ledger's COPY),
read back with the csv module.
"""

import csv
import io
import string

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidents.export.csvsafe import DANGEROUS_FIRST, safe_cell, sql_safe, unescape_cell
from incidents.export.files import CsvWriter, HashedFile

_TRICKY = "=+-@\t\r\n\0'\",;|!%" + string.ascii_letters[:6] + "é中😀"
cells = st.one_of(
    st.text(alphabet=_TRICKY, max_size=12),
    st.text(max_size=20),
    st.sampled_from(
        [
            "=1+1",
            "+SUM(A1:A9)",
            "-2+3",
            "@SUM(1)",
            "\t=cmd|' /C calc'!A0",
            "\r=1",
            "\0=1",
            '=HYPERLINK("http://evil.example","click")',
            "'=already quoted",
            "'",
            "",
        ]
    ),
)


def _write_and_read(rows, tmp_path) -> list[list[str]]:
    out = HashedFile(tmp_path / "fuzz.csv")
    CsvWriter(out, ["a", "b", "c"]).write_rows(rows)
    out.close()
    with open(tmp_path / "fuzz.csv", newline="", encoding="utf-8") as f:
        return list(csv.reader(f))[1:]


def _spreadsheet_would_run(cell: str) -> bool:
    return cell.startswith(DANGEROUS_FIRST)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(cells, min_size=3, max_size=3), min_size=1, max_size=8))
def test_no_fuzzed_cell_reaches_a_spreadsheet_as_a_formula(rows, tmp_path):
    read = _write_and_read(rows, tmp_path)
    assert len(read) == len(rows)  # line breaks inside cells never split a row
    for written, original in zip(read, rows, strict=True):
        assert not any(_spreadsheet_would_run(cell) for cell in written)
        assert [unescape_cell(cell) for cell in written] == original


@pytest.mark.parametrize("first", DANGEROUS_FIRST)
def test_each_dangerous_first_character_is_escaped(first):
    assert safe_cell(first + "1+1") == "'" + first + "1+1"
    assert safe_cell("1" + first) == "1" + first
    assert safe_cell(5) == 5 and safe_cell(None) is None


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL-only behaviour")
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.text(alphabet=_TRICKY.replace("\0", ""), max_size=12), min_size=1, max_size=10
    )
)
def test_the_ledger_copy_escapes_exactly_as_the_csv_writer_does(values, db):
    # The ledger's text columns are escaped by PostgreSQL (sql_safe) inside COPY.
    sql = f"COPY (SELECT {sql_safe('v')} FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n) TO STDOUT WITH (FORMAT csv)"
    buffer = io.BytesIO()
    connection.ensure_connection()
    with connection.connection.cursor() as cursor, cursor.copy(sql, [values]) as copy:
        for block in copy:
            buffer.write(block)
    read = [row[0] if row else "" for row in csv.reader(io.StringIO(buffer.getvalue().decode()))]
    assert read == [safe_cell(v) for v in values]
