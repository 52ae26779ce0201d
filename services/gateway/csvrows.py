"""CSV as the exports write it: RFC 4180 rows (the csv module's quoting), UTF-8 with a byte order
mark so a spreadsheet reads the text as UTF-8, and every cell safe to open (OWASP's CSV injection
advice: a cell a spreadsheet would take for a formula is prefixed with a single quote).

Money arrives as the services' exact decimal strings and is written as such: no cell is ever a
float, and no amount starts with a formula character, so no amount is ever altered."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence

BOM = "\ufeff".encode()
# What a spreadsheet may read as the start of a formula (OWASP: = + - @, tab, carriage return).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# A plain number (a payment's output index of -1, a negative amount) is read as that number, not
# a formula: left as it is, or the spreadsheet would show it as text.
PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def safe_cell(value: str) -> str:
    if value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def encode_rows(rows: Iterable[Sequence[str]]) -> bytes:
    """Rows as CSV bytes, each cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([safe_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode()
