"""Spreadsheet-safe CSV cells (OWASP "CSV injection").

A spreadsheet runs a cell that starts with = + - @ (or a tab, carriage return
or NUL, which some programs skip before reading the formula) as a formula. Such
a cell gets a leading apostrophe, so the spreadsheet shows it as text. A cell
that already starts with an apostrophe gets one too, so the rule can be undone
exactly: a reader strips one leading apostrophe from any text cell that has
one (`unescape_cell`). The csv module quotes separators, quotes and line breaks.
"""

DANGEROUS_FIRST = ("=", "+", "-", "@", "\t", "\r", "\0")
_ESCAPE_FIRST = (*DANGEROUS_FIRST, "'")


def safe_cell(value):
    """The cell as written to a CSV file: text that starts dangerously gets a leading '."""
    if isinstance(value, str) and value.startswith(_ESCAPE_FIRST):
        return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """The original text of a cell written by safe_cell."""
    return text[1:] if text.startswith("'") else text


def sql_safe(expression: str) -> str:
    """The same rule in PostgreSQL, for a text expression in a COPY (NUL cannot occur there)."""
    return (
        f"CASE WHEN left({expression}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r', '''') "
        f"THEN '''' || {expression} ELSE {expression} END"
    )
