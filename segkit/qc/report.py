"""The cohort QC report: one small JSON per case (written by whichever worker ran it, next to its
overlay PNGs) and one `index.html` that the driver alone builds from them at the end, so concurrent
workers never share a file. `segkit qc build DIR` rebuilds the page from what is on disk.

Layout of a QC folder:

    cases/<id>.json          the case: status, task, inputs, and per label its planes (overlay + plain)
    overlays/*.png           `<mask stem>_qc_axis{A}_{index}.png` (segkit.qc.overlay) and `..._plain.png`
    index.html               the page: case list with search and status filters, overlays, keyboard
                             review (marks kept in the browser's localStorage, exported as TSV)
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

CASES = "cases"
INDEX = "index.html"
_TEMPLATE = Path(__file__).with_name("report_template.html")


def case_record_path(qc_dir: Path, case_id: str) -> Path:
    return Path(qc_dir) / CASES / f"{_safe(case_id)}.json"


def _safe(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id)


def write_case_record(qc_dir: Path, case_id: str, prediction, plan, task: str) -> Path:
    """Plain (mask-free) PNGs of the overlays' planes, then the case's JSON, both atomically."""
    from segkit.api import sidecar_path

    labels = []
    for out in prediction.outputs:
        stem = sidecar_path(plan.masks[out.name]).stem
        planes = write_plain_planes(prediction.reference.data, out.mask, plan.qc_dir, stem)
        labels.append({"label": out.name, "voxels": int((out.mask != 0).sum()),
                       "mask": str(plan.masks[out.name]), "planes": planes})
    entry = {"id": case_id, "status": "done", "task": task,
             "inputs": [str(p) for p in prediction.case.inputs], "labels": labels}
    return _write_record(qc_dir, entry)


def write_failed_record(qc_dir: Path, case_id: str, inputs, error: str) -> Path:
    return _write_record(qc_dir, {"id": case_id, "status": "failed", "inputs": list(map(str, inputs)),
                                  "error": error, "labels": []})


def _write_record(qc_dir: Path, entry: dict) -> Path:
    from segkit.io.writer import atomic_write_json

    path = case_record_path(qc_dir, entry["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, entry)
    return path


def write_plain_planes(image, mask, overlay_dir: Path, stem: str) -> list[dict]:
    """The planes segkit.qc.overlay drew for this mask, again without the mask (for the overlay
    toggle); paths relative to the QC folder."""
    import numpy as np

    from segkit.qc.overlay import _as_float, _save_png, _window, mask_centre, render_overlay

    image = np.asarray(image)  # as stored: only the drawn planes become float64
    low, high = _window(image)
    folder = Path(overlay_dir)
    if image.ndim == 2:
        views = [(None, None, _as_float(image), f"{stem}_qc")]
    else:
        centre = mask_centre(np.asarray(mask))
        views = [(a, centre[a], _as_float(np.take(image, centre[a], axis=a)), f"{stem}_qc_axis{a}_{centre[a]}")
                 for a in range(3)]
    planes = []
    for axis, index, plane, name in views:
        _save_png(render_overlay(plane, np.zeros(plane.shape, bool), low, high), folder / f"{name}_plain.png")
        planes.append({"axis": axis, "index": index, "overlay": f"{folder.name}/{name}.png",
                       "plain": f"{folder.name}/{name}_plain.png"})
    return planes


def read_records(qc_dir: Path) -> list[dict]:
    records = []
    for path in sorted((Path(qc_dir) / CASES).glob("*.json")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            records.append({"id": path.stem, "status": "unreadable", "labels": [], "error": f"{path.name} is not JSON"})
    return records


def build_report(qc_dir: Path, title: str = "segkit QC") -> Path:
    """Write `index.html` from every case record under `qc_dir` (atomically); returns its path."""
    from segkit.errors import SegkitError
    from segkit.io.writer import atomic_write_text

    qc_dir = Path(qc_dir)
    records = read_records(qc_dir)
    if not records:
        raise SegkitError(f"{qc_dir}: no QC case records ({CASES}/*.json); run a cohort with --qc {qc_dir} first")
    data = json.dumps(records, sort_keys=True).replace("</", "<\\/")  # never closes the script element
    page = _TEMPLATE.read_text(encoding="utf-8")
    page = page.replace("__TITLE__", html.escape(title)).replace("__STORAGE_KEY__", _storage_key(qc_dir))
    page = page.replace("__CASES_JSON__", data)
    atomic_write_text(qc_dir / INDEX, page)
    return qc_dir / INDEX


def _storage_key(qc_dir: Path) -> str:
    """Marks are kept per report folder, so two studies opened in one browser do not mix."""
    import hashlib

    return "segkit-qc-" + hashlib.sha256(str(Path(qc_dir).resolve()).encode()).hexdigest()[:16]
