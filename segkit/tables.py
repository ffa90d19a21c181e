"""Tables for stdout or files: TSV (default), CSV or JSON, shared by `eval` and `quantify`; and the
reader of the CSV tables they take as input (lists of cases or subjects).

Missing values (None, NaN, +-Inf) are written as an empty cell in TSV/CSV and as null in JSON, so
the JSON is always standard (no NaN or Infinity tokens). Floats keep full precision (repr).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Iterable, TextIO

TABLE_FORMATS = ("tsv", "csv", "json")


def _clean(value):
    if isinstance(value, bool) or value is None:
        return value
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cell(value) -> str:
    value = _clean(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def columns_of(rows: Iterable[dict], first: Iterable[str] = ()) -> list[str]:
    """`first` then every other key in order of first appearance."""
    columns = list(first)
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns


def format_table(rows: list[dict], fmt: str = "tsv", columns: list[str] | None = None) -> str:
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"table format must be one of {TABLE_FORMATS}, not {fmt!r}")
    columns = columns or columns_of(rows)
    if fmt == "json":
        records = [{c: _clean(row.get(c)) for c in columns} for row in rows]
        return json.dumps(records, indent=1, allow_nan=False) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def write_table(rows: list[dict], stream: TextIO, fmt: str = "tsv", columns: list[str] | None = None) -> None:
    stream.write(format_table(rows, fmt, columns))
    stream.flush()


def save_table(rows: list[dict], path, fmt: str | None = None, columns: list[str] | None = None) -> Path:
    """Write atomically; the format follows the suffix (.tsv/.csv/.json) unless given."""
    from segkit.io.writer import atomic_write_text

    path = Path(path)
    fmt = fmt or {".csv": "csv", ".json": "json"}.get(path.suffix.lower(), "tsv")
    atomic_write_text(path, format_table(rows, fmt, columns))
    return path


def read_csv_rows(path: Path) -> tuple[set[str], list[dict[str, str]]]:
    """(column names, rows) of a CSV with a header line, as people type them in a spreadsheet.

    Names are stripped and lower-cased and cells stripped, so " Mask " is the column "mask";
    cells beyond the header are dropped and rows without any value are skipped.
    """
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:  # not the locale's codec
        reader = csv.DictReader(handle)
        fields = {(name or "").strip().lower() for name in (reader.fieldnames or [])}
        # DictReader puts cells beyond the header under the key None
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    return fields, [row for row in rows if any(row.values())]
