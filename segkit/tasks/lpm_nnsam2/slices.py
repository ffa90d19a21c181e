"""Axial frames for the propagators, and the way back to each input's voxel grid (METHODS: nnSAM2).

Every volume is reoriented to RAS (the task's orientation), so axial slices lie along the third
array axis. Intensities are scaled to 0-255 over the whole volume: CT is clipped to [-30, 150] HU,
MRI is scaled between its 0.5 and 99.5 percentiles. Each slice is resized to 256x256 (bilinear,
pixel centres aligned), as nnSAM2 exports its JPG frames; `FrameGrid.to_volume` undoes both steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segkit.tasks.facts import orientation
from segkit.tasks.lpm_nnsam2.labels import TASK, lpm_labels

FRAME_SIZE = 256
CT_WINDOW = (-30.0, 150.0)
MRI_PERCENTILES = (0.5, 99.5)


def detect_modality(volume: np.ndarray) -> str:
    """'ct' when the volume looks like Hounsfield units, else 'mri' (`--modality` overrides).

    Air near -1000 HU says CT; so does a CT cropped to the body, without air: more than 1% of
    its voxels are fat (-200..-50 HU), which magnitude MRI (never far below 0) does not have."""
    volume = np.asarray(volume)
    if float(np.percentile(volume, 1.0)) < -500.0:
        return "ct"
    fat = sum(np.count_nonzero((plane >= -200.0) & (plane <= -50.0)) for plane in np.moveaxis(volume, -1, 0))
    return "ct" if fat > 0.01 * volume.size else "mri"


def frame_window(volume: np.ndarray, modality: str) -> tuple[float, float]:
    """The intensities mapped to 0 and 255: the CT window, or the MRI volume's percentiles."""
    if modality == "ct":
        return CT_WINDOW
    lo, hi = (float(v) for v in np.percentile(np.asarray(volume, dtype=np.float32), MRI_PERCENTILES))
    return lo, hi


def scale_to_255(volume: np.ndarray, modality: str, window: tuple[float, float] | None = None) -> np.ndarray:
    """float32 0-255 over `window` (default: the volume's own, `frame_window`). Element-wise, so a
    slice scaled with its volume's window equals that slice of the scaled volume."""
    lo, hi = window or frame_window(volume, modality)
    volume = np.asarray(volume, dtype=np.float32)
    scaled = (np.clip(volume, lo, hi) - lo) / max(hi - lo, 1e-6) * 255.0
    return scaled.astype(np.float32)


def resize_2d(plane: np.ndarray, out_shape: tuple[int, int], order: int = 1) -> np.ndarray:
    """Resize a 2D array with aligned pixel centres (source = (dest + 0.5) * in / out - 0.5)."""
    from scipy import ndimage

    plane = np.asarray(plane, dtype=np.float32)
    rows = (np.arange(out_shape[0]) + 0.5) * plane.shape[0] / out_shape[0] - 0.5
    cols = (np.arange(out_shape[1]) + 0.5) * plane.shape[1] / out_shape[1] - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(plane, grid, order=order, mode="nearest")


@dataclass
class FrameGrid:
    """One input volume in RAS, sliced into 256x256 frames, with the way back to its own grid."""

    reorient: object  # segkit.io.orientation.Reorientation
    in_plane: tuple[int, int]  # RAS in-plane shape of each slice

    @property
    def n_slices(self) -> int:
        return int(self.reorient.canonical_shape[2])

    def file_axis_and_index(self, ras_slice: int) -> tuple[int, int]:
        """The input file's array axis that holds axial slices, and this slice's index along it."""
        here = self.reorient.index_from_canonical([0, 0, ras_slice])
        step = self.reorient.index_from_canonical([0, 0, ras_slice + 1]) - here
        axis = int(np.argmax(np.abs(step)))
        return axis, int(round(here[axis]))

    def label_volume(self, frame_labels: np.ndarray, labels=None) -> np.ndarray:
        """Frames of labels -> label volume in the input's grid; overlaps go to the larger resized value.
        A slice at a time: the resized float planes of one slice, never of the volume (a float32
        volume per label and their argmax were 6 GB at 512x512x800)."""
        labels = labels or lpm_labels()
        values = np.asarray(labels, dtype=np.uint8)
        label = np.zeros((*self.in_plane, self.n_slices), dtype=np.uint8)
        for k in range(self.n_slices):
            resized = np.zeros((len(labels), *self.in_plane), dtype=np.float32)
            for j, value in enumerate(labels):
                if (frame_labels[k] == value).any():
                    resized[j] = resize_2d((frame_labels[k] == value).astype(np.float32), self.in_plane)
            label[:, :, k] = np.where(resized.max(axis=0) >= 0.5, values[np.argmax(resized, axis=0)], 0)
        return self.reorient.from_canonical(label)


def ras_volume(image) -> tuple[np.ndarray, FrameGrid]:
    """An Image's array in RAS order (a view of it) and the FrameGrid that maps frames back to its grid."""
    from segkit.io.orientation import reorientation_to

    reorient = reorientation_to(image.affine, image.shape, orientation(TASK))
    ras = reorient.to_canonical(np.asarray(image.data), view=True)  # read a slice at a time: no copy
    return ras, FrameGrid(reorient=reorient, in_plane=(int(ras.shape[0]), int(ras.shape[1])))


def frames_from_ras(ras: np.ndarray, modality: str) -> np.ndarray:
    """(n_slices, 256, 256) uint8 frames of a RAS volume, scaled as METHODS gives (a slice at a time:
    no float copy of the whole volume)."""
    window = frame_window(ras, modality)
    frames = np.empty((ras.shape[2], FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    for k in range(ras.shape[2]):
        scaled = scale_to_255(ras[:, :, k], modality, window)
        frames[k] = np.clip(np.rint(resize_2d(scaled, (FRAME_SIZE, FRAME_SIZE))), 0, 255)
    return frames


def label_frames_from_ras(ras_labels: np.ndarray, labels=None) -> np.ndarray:
    """Label slices -> (n_slices, 256, 256) label frames (each label resized as a mask, 0.5 cut)."""
    labels = labels or lpm_labels()
    frames = np.zeros((ras_labels.shape[2], FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
    for k in range(ras_labels.shape[2]):
        for value in labels:
            region = ras_labels[:, :, k] == value
            if region.any():
                frames[k][resize_2d(region.astype(np.float32), (FRAME_SIZE, FRAME_SIZE)) >= 0.5] = value
    return frames
