"""One case from HU to the network's two channels, shared by `segment` and `train`:

    HU (RAS) -> brain mask (strip_skull) -> skull-stripped CT -> registered mirror (flip_register,
    cached per case) -> both cropped to the brain's box (kept only as that box), given nnU-Net's CT
    normalisation per channel and resampled to the model spacing (nnU-Net's preprocessing, in its order)

The registered mirror is cached under SEGKIT_HOME/cache/ais_ncct/mirror/<key>/, the key being the
sha256 of the stripped CT's bytes, its spacing and the registration settings: the same case is
registered once (the transform is kept there too, as an ITK transform file).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REGISTRATION_VERSION = "rigid-euler3d+demons-v1"


@dataclass
class CasePreprocessed:
    """One case ready for the network. The two channels are kept as their non-zero box only (the brain:
    a head CT of 800 thin slices has its brain in a third of them and half the plane), since nothing
    outside it reaches the network; `whole` puts a channel back on the case's grid."""

    hu: np.ndarray  # RAS; float32, or int16 (ct.compact_hu)
    spacing: tuple[float, float, float]
    brain: np.ndarray  # bool, on the case's grid
    box: tuple[slice, slice, slice]  # the voxels non-zero in either channel (`nonzero_box`)
    stripped: np.ndarray  # the box of: HU inside the brain, 0 outside (channel 0); hu's dtype (int16 or float32)
    mirror: np.ndarray  # the box of: the registered mirror inside the brain, 0 outside (channel 1), float32
    registration: dict = field(default_factory=dict)

    @classmethod
    def from_whole(cls, hu, spacing, brain, stripped, mirror, registration=None) -> "CasePreprocessed":
        """From channels on the case's grid: the mirror is zeroed outside the brain, then both are cropped."""
        box = nonzero_box(stripped, mirror, brain)
        mirror_box = np.array(mirror[box], dtype=np.float32)  # a copy: `mirror` may be the cache's read-only map
        np.copyto(mirror_box, np.float32(0.0), where=~brain[box])
        return cls(hu, spacing, brain, box, stripped[box].copy(), mirror_box, registration or {})

    def whole(self, channel: np.ndarray) -> np.ndarray:
        """`stripped` or `mirror` on the case's grid (zeros outside the box, as they were)."""
        out = np.zeros(self.brain.shape, dtype=channel.dtype)
        out[self.box] = channel
        return out


def nonzero_box(stripped: np.ndarray, mirror: np.ndarray, brain: np.ndarray, slab: int = 32) -> tuple[slice, slice, slice]:
    """The box nnU-Net crops every case to before anything else (`crop_to_nonzero`): the voxels that are
    non-zero in either channel (the mirror counted inside the brain only), i.e. the brain. Training
    patches that reach past it are padded with zeros (the normalised mean), so the network never saw
    the normalised 0 HU that lies around the head outside the box; inference works on the same box.
    Found a slab of slices at a time: no volume-sized boolean beside the channels."""
    from segkit.io.grid import mask_box

    low, high = None, None
    for start in range(0, stripped.shape[2], slab):
        part = np.s_[:, :, start:start + slab]
        box = mask_box((stripped[part] != 0) | ((mirror[part] != 0) & brain[part]))
        if box is None:
            continue
        first = [b.start for b in box[:2]] + [start + box[2].start]
        last = [b.stop for b in box[:2]] + [start + box[2].stop]
        low = first if low is None else np.minimum(low, first)
        high = last if high is None else np.maximum(high, last)
    if low is None:
        return tuple(slice(0, n) for n in stripped.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def default_cache_dir() -> Path:
    from segkit.registry.paths import cache_home

    return cache_home() / "cache" / "ais_ncct" / "mirror"


def case_key(stripped: np.ndarray, spacing) -> str:
    digest = hashlib.sha256()
    for start in range(0, stripped.shape[0], 8):  # the float32 C-order bytes, a few slabs at a time
        digest.update(np.ascontiguousarray(stripped[start:start + 8], dtype=np.float32).data)
    digest.update(json.dumps([list(stripped.shape), [round(float(s), 6) for s in spacing], REGISTRATION_VERSION]).encode())
    return digest.hexdigest()[:32]


def cached_flip_register(stripped: np.ndarray, spacing, brain: np.ndarray, cache_dir: Path | None):
    """(registered mirror, info): from the cache when this case was registered before."""
    from segkit.tasks.ais_ncct.mirror import flip_register

    folder = None if cache_dir is None else Path(cache_dir) / case_key(stripped, spacing)
    if folder is not None and (folder / "info.json").is_file():
        try:
            mirror = np.load(folder / "mirror.npy", mmap_mode="r")  # only the box is read
            info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
            if mirror.shape == stripped.shape:
                return mirror, {**info, "cached": True}
        except (OSError, ValueError):
            pass  # a damaged entry is recomputed and replaced
    result = flip_register(stripped, spacing, brain=brain)
    if folder is not None:
        _store(folder, result)
    return result.mirror, {**result.info, "cached": False}


def _store(folder: Path, result) -> None:
    """mirror.npy, transform.h5, then info.json (the entry counts only once info.json is there)."""
    import SimpleITK as sitk

    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".mirror.{os.getpid()}.npy"
        np.save(tmp, result.mirror)
        os.replace(tmp, folder / "mirror.npy")
        sitk.WriteTransform(result.transform, str(folder / f".transform.{os.getpid()}.h5"))
        os.replace(folder / f".transform.{os.getpid()}.h5", folder / "transform.h5")
        info_tmp = folder / f".info.{os.getpid()}.json"
        info_tmp.write_text(json.dumps(result.info), encoding="utf-8")
        os.replace(info_tmp, folder / "info.json")
    except OSError:
        pass  # a cache that cannot be written only costs time


def preprocess_case(hu: np.ndarray, spacing, cache_dir: Path | None = None) -> CasePreprocessed:
    from segkit.tasks.ais_ncct.ct import apply_brain_mask, strip_skull

    spacing = tuple(float(s) for s in spacing)
    brain = strip_skull(hu, spacing)
    stripped = apply_brain_mask(hu, brain)
    mirror, info = cached_flip_register(stripped, spacing, brain, cache_dir)
    return CasePreprocessed.from_whole(hu, spacing, brain, stripped, mirror, info)


def model_channels(case: CasePreprocessed, target_spacing, stats: list[dict]) -> np.ndarray:
    """(2, X, Y, Z) float32: the box of both channels, each normalised, then resampled to the model
    spacing (None: the case's own) in nnU-Net's order (crop, normalise, resample)."""
    from segkit.tasks.ais_ncct.intensity import CTStats, normalise_ct, resample_to_spacing

    channels = []
    for array, channel_stats in zip((case.stripped, case.mirror), stats):
        array = normalise_ct(array, CTStats.from_dict(channel_stats))
        if target_spacing is not None:
            array = resample_to_spacing(array, case.spacing, target_spacing, order=3)
        channels.append(array)
    return np.stack(channels)


class ModelChannels:
    """The two channels of `model_channels`, built for a range of model-grid slices at a time: what the
    sliding window asks for, one row of windows at a time. Normalising is per voxel, and where nnU-Net
    resamples slice by slice (SliceResampling "per_slice", the usual case of a thin-slice CT and a
    thick-slice model spacing) a model slice is one box slice resampled in-plane, so these slices are
    `model_channels`' to the bit without the box ever being held as float. Other resamplings are 3D
    and only the whole volume gives their numbers: those channels are made whole, once."""

    def __init__(self, case: CasePreprocessed, target_spacing, stats: list[dict]):
        from segkit.tasks.ais_ncct.intensity import CTStats, SliceResampling, shape_for_spacing

        self.case = case
        self.stats = [CTStats.from_dict(channel) for channel in stats]
        box_shape = case.stripped.shape
        self.shape = box_shape if target_spacing is None else shape_for_spacing(box_shape, case.spacing, target_spacing)
        self.resampling = SliceResampling(box_shape, self.shape, case.spacing, target_spacing or case.spacing, 3)
        self.whole = None
        if self.resampling.rule == "whole":
            self.whole = model_channels(case, target_spacing, stats)
        self.sources = None if self.whole is not None else self.resampling.sources()

    def slices(self, first: int, stop: int) -> np.ndarray:
        """(2, X, Y, stop - first) float32: model slices first .. stop of both channels."""
        if self.whole is not None:
            return self.whole[..., first:stop]
        out = np.empty((2, *self.shape[:2], stop - first), dtype=np.float32)
        for channel, (array, stats) in enumerate(zip((self.case.stripped, self.case.mirror), self.stats)):
            made = {}  # a box slice that several model slices copy is resampled once
            for k in range(first, stop):
                source = int(self.sources[k])
                if source not in made:
                    made[source] = self._model_slice(array, stats, source)
                out[channel, :, :, k - first] = made[source]
        return out

    def _model_slice(self, array: np.ndarray, stats, source: int) -> np.ndarray:
        from segkit.tasks.ais_ncct.intensity import normalise_ct

        return self.resampling.resample_slice(normalise_ct(array[:, :, source], stats))


def parse_spacing(text: str | None):
    """'x,y,z' mm -> tuple, 'native' or None -> None (the data's own spacing)."""
    from segkit.errors import SegkitError

    if text is None or str(text).strip().lower() == "native":
        return None
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(v > 0 for v in values):
        raise SegkitError(f"--spacing {text!r}: give three positive numbers in mm (R-L,A-P,S-I), or 'native'")
    return values
