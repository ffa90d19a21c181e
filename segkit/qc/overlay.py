"""PNG overlays of a mask on its image (Pillow only), on the planes through the mask's centre.

Each PNG shows one plane of the image, windowed to its 1st-99th percentile, with the mask as a
semi-transparent red fill and an opaque contour. Array rows are drawn as image columns (the plane
is transposed) so that the first array axis runs left-right, as viewers draw RAS-like data; no
reorientation is attempted, so the pictures follow the file's own array order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILL_RGB = np.array([255, 40, 40], dtype=np.float64)
FILL_ALPHA = 0.35
CONTOUR_RGB = np.array([255, 230, 0], dtype=np.uint8)
MIN_PNG_SIDE = 256  # small planes are enlarged (nearest neighbour) so they stay readable


def write_qc_pngs(image_array: np.ndarray, mask: np.ndarray, out_dir: Path | str, stem: str) -> list[Path]:
    """Write `<stem>_qc_axis{A}_{index}.png` per plane (one `<stem>_qc.png` for a 2D image).

    Only the drawn planes are converted to float64; the window and the centre are computed from the
    stored values (a 512x512x800 CT would be a 1.7 GB float64 copy, and its percentile another)."""
    image = np.asarray(image_array)  # an image held on disk (segkit.io.slab) is read once, as stored
    mask = np.asarray(mask)
    if image.shape != mask.shape or image.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be the same 2D or 3D shape")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    low, high = _window(image)
    if image.ndim == 2:
        path = out_dir / f"{stem}_qc.png"
        _save_png(render_overlay(_as_float(image), mask != 0, low, high), path)
        return [path]
    centre = mask_centre(mask)
    written = []
    for axis in range(3):
        index = centre[axis]
        path = out_dir / f"{stem}_qc_axis{axis}_{index}.png"
        plane, mask_plane = _as_float(np.take(image, index, axis=axis)), np.take(mask, index, axis=axis) != 0
        _save_png(render_overlay(plane, mask_plane, low, high), path)
        written.append(path)
    return written


def _as_float(plane: np.ndarray) -> np.ndarray:
    return np.asarray(plane, dtype=np.float64)


def mask_centre(mask: np.ndarray) -> tuple[int, ...]:
    """Rounded centre of mass of the mask's non-zero voxels; the image centre when it is empty.

    From the count of voxels per index along each axis: the exact integer sums np.argwhere's mean
    would make, without its (voxels x ndim) int64 array."""
    axes = range(mask.ndim)
    counts = [np.count_nonzero(mask, axis=tuple(b for b in axes if b != a)) for a in axes]
    total = int(counts[0].sum())
    if total == 0:
        return tuple(n // 2 for n in mask.shape)
    sums = [int(np.dot(c.astype(np.int64), np.arange(c.size, dtype=np.int64))) for c in counts]
    return tuple(int(round(s / total)) for s in sums)


def _window(image: np.ndarray) -> tuple[float, float]:
    """The 1st and 99th percentiles (numpy's linear method), else the range when they meet."""
    low, high = percentiles(image, (1.0, 99.0))
    if high <= low:
        low, high = float(np.min(image)), float(np.max(image))
    return float(low), float(max(high, low + 1e-12))


def percentiles(values: np.ndarray, percents) -> list[float]:
    """np.percentile(values.astype(float64), percents), equal to it, without the float64 copy: the two
    order statistics around each percentile come from a histogram a slab at a time (integers of up to
    16 bits) or a partition of a copy in the stored type; numpy's interpolation is then applied."""
    n = values.size
    q = np.true_divide(np.asarray(percents, dtype=np.float64), 100)
    virtual = (n - 1) * q  # numpy's linear method (Hyndman and Fan's 7th)
    below = np.floor(virtual).astype(np.int64)
    ranks = sorted({int(r) for r in np.clip(np.concatenate([below, below + 1]), 0, n - 1)})
    order = dict(zip(ranks, _order_statistics(values, ranks)))
    result = []
    for v, lo in zip(virtual, below):
        a = order[int(np.clip(lo, 0, n - 1))]
        b = order[int(np.clip(lo + 1, 0, n - 1))]
        result.append(_lerp(a, b, float(v - lo)))
    return result


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's _lerp in float64: from the nearer end, so t = 1 gives b exactly."""
    a, b, t = np.float64(a), np.float64(b), np.float64(t)
    difference = b - a
    return float(b - difference * (1 - t)) if t >= 0.5 else float(a + difference * t)


def _order_statistics(values: np.ndarray, ranks: list[int]) -> list[float]:
    if values.dtype.kind in "biu" and values.dtype.itemsize <= 2:
        return _histogram_order_statistics(values, ranks)
    flat = np.array(values, copy=True).reshape(-1)  # the stored type: float32 stays float32
    flat.partition(ranks)
    return [float(flat[r]) for r in ranks]


_SLAB_VALUES = 1 << 22  # values converted to int64 for bincount at a time (32 MB)


def _histogram_order_statistics(values: np.ndarray, ranks: list[int]) -> list[float]:
    """Order statistics of small integers from their counts, accumulated a slab of rows at a time."""
    offset = int(np.iinfo(values.dtype).min) if values.dtype.kind == "i" else 0
    counts = np.zeros(1 << (8 * values.dtype.itemsize), dtype=np.int64)
    rows = values.reshape(values.shape[0], -1) if values.ndim > 1 else values.reshape(1, -1)
    step = max(1, _SLAB_VALUES // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], step):
        slab = rows[start:start + step].astype(np.int64).reshape(-1) - offset
        counts += np.bincount(slab, minlength=counts.size)
    cumulative = np.cumsum(counts)
    return [float(np.searchsorted(cumulative, r, side="right") + offset) for r in ranks]


def render_overlay(plane: np.ndarray, mask_plane: np.ndarray, low: float, high: float) -> np.ndarray:
    """(H, W) image and mask -> (W', H', 3) uint8 RGB: grey image, red fill, yellow contour."""
    grey = np.clip((plane - low) / (high - low), 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[mask_plane] = (1 - FILL_ALPHA) * rgb[mask_plane] + FILL_ALPHA * FILL_RGB
    rgb = rgb.astype(np.uint8)
    rgb[_contour(mask_plane)] = CONTOUR_RGB
    rgb = np.ascontiguousarray(np.transpose(rgb, (1, 0, 2))[::-1])  # axis 0 left-right, axis 1 upward
    return _enlarge(rgb)


def _contour(mask_plane: np.ndarray) -> np.ndarray:
    """Mask pixels with at least one 4-neighbour outside the mask (or on the plane's edge)."""
    padded = np.pad(mask_plane, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask_plane & ~inner


def _enlarge(rgb: np.ndarray) -> np.ndarray:
    factor = max(1, int(np.ceil(MIN_PNG_SIDE / max(rgb.shape[:2]))))
    return rgb.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else rgb


def _save_png(rgb: np.ndarray, path: Path) -> None:
    """Write atomically, so no half PNG is ever seen; world-readable like any file (QC is for sharing)."""
    from PIL import Image as PILImage

    from segkit.io.writer import atomic_output

    with atomic_output(path) as tmp:
        PILImage.fromarray(rgb).save(tmp, format="PNG")
