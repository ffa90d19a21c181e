"""The one manifest reader of `segment`, `eval` and `quantify`: a CSV with one row per case.

Column names are read as people type them (stripped, lower case, '-' as '_'); paths are relative to
the manifest's folder. For `segment`, a cell may hold several values separated by ';' (a case's
channels, several boxes).
"""

from __future__ import annotations

from pathlib import Path

from segkit.errors import SegkitError


def read_manifest(path, *, required: tuple[str, ...], path_columns: tuple[str, ...] = (), what: str = "cases",
                  error: type = SegkitError, header: str | None = None, line: str | None = None,
                  several: bool = False) -> list[dict]:
    """Rows as dicts of their filled cells (path columns as Path, or a list of Paths when `several`
    and the cell holds more than one), with '_line' the row's line number. Every required column
    must be in the header (else `header` says what is needed) and filled on every row (else `line`)."""
    from segkit.tables import read_csv_rows

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: manifest not found")
    try:
        fields, rows = read_csv_rows(path)
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"{path}: not a readable CSV manifest ({exc})") from None
    fields = {name.replace("-", "_") for name in fields}
    if any(name not in fields for name in required):
        needed = header or "column(s) " + " and ".join(f"'{name}'" for name in required)
        raise error(f"{path}: manifest needs a header with {needed}")
    rows = [{key.replace("-", "_"): value for key, value in row.items()} for row in rows]
    if not rows:
        raise error(f"{path}: manifest lists no {what}")
    out = []
    for number, row in enumerate(rows, start=2):
        empty = [name for name in required if not row.get(name)]
        if empty:
            raise error(f"{path}: line {number} {line or 'has no ' + ' or '.join(empty)}")
        out.append({**{k: v for k, v in row.items() if v}, "_line": number,
                    **{k: _paths(path.parent, row[k], several) for k in path_columns if row.get(k)}})
    return out


def _paths(folder: Path, cell: str, several: bool):
    if not several:
        return folder / cell
    paths = [folder / part.strip() for part in cell.split(";") if part.strip()]
    return paths[0] if len(paths) == 1 else paths
