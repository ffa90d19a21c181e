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
    """Write `<stem>_qc_axis{A}_{index}.png` per plane (one `<stem>_qc.png` for a 2D image)."""
    image = np.asarray(image_array, dtype=np.float64)
    mask = np.asarray(mask) != 0
    if image.shape != mask.shape or image.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be the same 2D or 3D shape")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    low, high = _window(image)
    if image.ndim == 2:
        path = out_dir / f"{stem}_qc.png"
        _save_png(render_overlay(image, mask, low, high), path)
        return [path]
    centre = mask_centre(mask)
    written = []
    for axis in range(3):
        index = centre[axis]
        path = out_dir / f"{stem}_qc_axis{axis}_{index}.png"
        rgb = render_overlay(np.take(image, index, axis=axis), np.take(mask, index, axis=axis), low, high)
        _save_png(rgb, path)
        written.append(path)
    return written


def mask_centre(mask: np.ndarray) -> tuple[int, ...]:
    """Rounded centre of mass of the mask; the image centre when the mask is empty."""
    if not mask.any():
        return tuple(n // 2 for n in mask.shape)
    centre = np.argwhere(mask).mean(axis=0)
    return tuple(int(round(c)) for c in centre)


def _window(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, [1, 99])
    if high <= low:
        low, high = float(image.min()), float(image.max())
    return float(low), float(max(high, low + 1e-12))


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
