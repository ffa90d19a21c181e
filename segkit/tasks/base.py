"""The staged task runner: the plumbing every task shares, done once.

    load     the model, once per process, keyed by its verified sha256 (and device)
    prepare  read the channels the registry's input contract names, check they share one grid,
             reorient to the registry's orientation and keep the inverse
    infer    arrays in, arrays out (a label map in the model's orientation): the only device stage
    finish   back to the input's orientation, one mask per registry label (post-processed, nested
             labels kept nested), provenance, side artifacts

A task subclasses `TaskRunner` and writes only what is its own (usually `load_model` and `infer`).
Many cases are the normal path: `predict_many` prepares (checks) every case before the model is
loaded, then infers them one by one with the same model. Writing files is `segkit.api`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from segkit.errors import SegkitError

if TYPE_CHECKING:  # only for type hints: keep this module free of numpy/torch imports
    import numpy as np

    from segkit.io.image import Image
    from segkit.io.orientation import Reorientation
    from segkit.registry.schema import LabelSpec, TaskSpec
    from segkit.tasks.common_options import SegmentCommon
    from segkit.tasks.options import TaskOptions

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Case:
    """The inputs of one output set: its channels, in the input contract's order."""

    inputs: tuple[Path, ...]

    @property
    def source(self) -> Path:
        return self.inputs[0]


@dataclass
class Prepared:
    case: Case
    reference: "Image"  # the input whose shape and affine every output takes
    arrays: list  # channels in the model's orientation
    reorientation: "Reorientation | None" = None  # None: the model sees the file's own array order
    extra: dict = field(default_factory=dict)  # task-specific checked inputs (prompts, support, ...)


@dataclass
class Inferred:
    label_map: "np.ndarray"  # the model's orientation; values are the registry's label values
    info: dict = field(default_factory=dict)
    artifacts: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # name -> atomic writer


@dataclass
class OutputMask:
    name: str  # label name, e.g. "sc"
    suffix: str  # file suffix, e.g. "_sc_seg" (a public API: fixed in the registry)
    mask: "np.ndarray"  # uint8 {0,1}, exactly the reference image's array shape
    value: int = 1


@dataclass
class Prediction:
    case: Case
    reference: "Image"
    outputs: list[OutputMask]
    info: dict = field(default_factory=dict)  # sidecar facts: model, sha256, device, backend, prompts, ...
    artifacts: dict[str, Callable[[Path], None]] = field(default_factory=dict)


_LOADED_MODELS: dict[tuple, object] = {}
_MAX_LOADED = 2


RELEASED_INPUT_BYTES = 64 << 20  # smaller inputs are kept: reopening a file costs more than they do
# Checked cases held in memory between the check and their inference; past this, a case is read
# again when its turn comes (twice the reading time, against memory that grows with the case count)
HELD_INPUT_BYTES = 1 << 30


class TaskRunner:
    """Base of every runner. `spec` is the registry entry, `options` the task's own, `common` the rest."""

    input_ndim: tuple[int, ...] = (3,)

    def __init__(self, spec: "TaskSpec", options: "TaskOptions", common: "SegmentCommon"):
        self.spec = spec
        self.options = options
        self.common = common

    # ------------------------------------------------------------------ what a task may override

    def labels(self) -> tuple["LabelSpec", ...]:
        """The output labels, known before any compute (so every output path can be planned)."""
        return self.spec.labels

    def channel_names(self) -> list[str]:
        return [str(channel.get("name")) for channel in self.spec.input.channels]

    # True where the task reads a slab and converts a slice at a time (its orientation must be
    # native): a 3D NIfTI of unscaled integers stays on disk (segkit.io.slab.StoredVolume), other
    # integer images keep their stored type instead of becoming a float32 copy of the volume
    reads_slabs = False
    # True where the model converts its input itself (nnU-Net normalises a slab at a time): unscaled
    # integers stay integers in memory (a 512x512x800 int16 CT: 420 MB instead of 840 MB as float32),
    # and a reoriented input is a view of the one read, not a second copy
    keeps_integers = False

    def orientation(self) -> str:
        return self.spec.input.orientation

    def model_key(self) -> tuple:
        """What identifies the loaded model: the verified sha256 of its files, and the device."""
        return ()

    def load_model(self):
        return None

    def infer(self, model, prepared: Prepared, progress: ProgressFn | None) -> Inferred:
        raise NotImplementedError

    def provenance(self) -> dict:
        """Sidecar facts shared by every case (model, device, ...)."""
        return {}

    # ------------------------------------------------------------------ the shared stages

    def cases(self, inputs: list[Path]) -> list[Case]:
        """One case per input for single-channel tasks; else consecutive groups of the channel count."""
        names = self.channel_names()
        inputs = [Path(p) for p in inputs]
        if not inputs:
            raise SegkitError("give at least one input image with -i")
        if len(names) == 1:
            return [Case((path,)) for path in inputs]
        if len(inputs) % len(names):
            listed = ", ".join(f"_{i:04d} {n}" for i, n in enumerate(names))
            raise SegkitError(
                f"this model takes {len(names)} channel(s) ({listed}); give one -i per channel in that order, "
                f"got {len(inputs)}"
            )
        return [Case(tuple(inputs[i : i + len(names)])) for i in range(0, len(inputs), len(names))]

    def prepare(self, case: Case) -> Prepared:
        from segkit.io.image import load_image

        images = [load_image(path, allowed_ndim=self.input_ndim, series=self.common.series,
                             keep_integers=self.reads_slabs or self.keeps_integers, on_disk=self.reads_slabs) for path in case.inputs]
        check_same_grid(images)
        reference = images[0]
        if self.orientation() == "native":
            return Prepared(case, reference, [img.data for img in images])
        from segkit.io.orientation import reorientation_to

        reorient = reorientation_to(reference.affine, reference.shape, self.orientation())
        arrays = [reorient.to_canonical(img.data, view=self.keeps_integers) for img in images]
        return Prepared(case, reference, arrays, reorient)

    def finish(self, prepared: Prepared, inferred: Inferred) -> Prediction:
        from segkit.postprocess import parse_min_size, postprocess_record, split_labels

        label_map, inferred.label_map = inferred.label_map, None  # one label map alive at a time
        self._release_inputs(prepared)
        if prepared.reorientation is not None:
            label_map = prepared.reorientation.from_canonical(label_map)
        steps = dict(largest=self.common.largest, fill_holes=self.common.fill_holes,
                     remove_small=parse_min_size(self.common.remove_small),
                     voxel_volume_mm3=prepared.reference.voxel_volume_mm3)
        masks = split_labels(label_map, self.labels(), **steps)
        outputs = [
            OutputMask(name=lab.name, suffix=lab.suffix, mask=masks[lab.name],
                       value=lab.values[0] if len(lab.values) == 1 else 1)
            for lab in self.labels()
        ]
        info = {**self.provenance(), **inferred.info, "postprocess": postprocess_record(**steps)}
        return Prediction(prepared.case, prepared.reference, outputs, info, inferred.artifacts)

    def _release_inputs(self, prepared: Prepared) -> None:
        """The model's inputs are done with, and are freed before the masks are made. What the outputs
        still need of the input is its geometry, and for --qc a few planes: a large integer NIfTI that
        a keeps_integers runner holds (nnU-Net: its arrays are views of it) is reopened on disk."""
        prepared.arrays = []
        data = prepared.reference.data
        if not (self.keeps_integers and getattr(data, "nbytes", 0) >= RELEASED_INPUT_BYTES
                and prepared.reference.is_nifti and data.dtype.kind in "iu"):
            return
        from segkit.io.slab import StoredVolume

        stored = StoredVolume(prepared.reference.path)
        if stored.shape == data.shape and stored.dtype == data.dtype:
            prepared.reference.data = stored

    def model(self):
        """The loaded model, shared by every runner of this class in this process with the same key."""
        key = (type(self).__module__, type(self).__qualname__, *self.model_key())
        if key not in _LOADED_MODELS:
            while len(_LOADED_MODELS) >= _MAX_LOADED:
                _LOADED_MODELS.pop(next(iter(_LOADED_MODELS)))
            _LOADED_MODELS[key] = self.load_model()
        return _LOADED_MODELS[key]

    def prepare_all(self, cases: list[Case]) -> list["Prepared | None"]:
        """Read and check every case, before any weights are looked for (kept for `predict_many`, so
        `segkit.api` can check the inputs first, then plan outputs, then predict). A checked case stays
        in memory while the inputs kept stay under HELD_INPUT_BYTES; the others are None, and are
        read again when their turn comes (a folder of CTs must not all be held at once)."""
        checked = getattr(self, "_checked", None)
        if checked is None or checked[0] != list(cases):
            checked = (list(cases), self._check_each(cases))
            self._checked = checked
        return checked[1]

    def _check_each(self, cases: list[Case]) -> list["Prepared | None"]:
        kept: list[Prepared | None] = []
        held = 0
        for case in cases:
            prepared = self.prepare(case)
            size = _input_bytes(prepared)
            # the first case is inferred first, so reading it again would gain nothing
            keep = not kept or held + size <= HELD_INPUT_BYTES
            held += size if keep else 0
            kept.append(prepared if keep else None)
            del prepared  # a case not kept is freed before the next one is read
        return kept

    def predict_many(self, cases: list[Case], progress: ProgressFn | None = None) -> Iterator[Prediction]:
        """Every case is read and checked before the model loads; then each is inferred in turn, and
        only the case being inferred (and those still waiting in memory) is held."""
        prepared = self.prepare_all(cases)
        self._checked = None
        model = self.model()
        for index, case in enumerate(cases):
            one, prepared[index] = prepared[index], None
            if one is None:  # checked already; read again now rather than held since the check
                one = self.prepare(case)
            yield self.finish(one, self.infer(model, one, progress))

    def planned_artifacts(self) -> list:
        """The registry's side outputs this run will write (those whose `when` option is set)."""
        return [a for a in self.spec.artifacts if a.when is None or getattr(self.options, a.when, None)]


def _input_bytes(prepared: Prepared) -> int:
    """Bytes of the arrays a prepared case holds (a view counts as its own: an upper bound)."""
    arrays = [*prepared.arrays, prepared.reference.data]
    return sum(int(getattr(array, "nbytes", 0)) for array in arrays)


def check_same_grid(images) -> None:
    """All channels of a case share one voxel grid (segkit.io.grid's one check and tolerance)."""
    from segkit.io.grid import check_same_grid as check_pair

    for other in images[1:]:
        check_pair(other, images[0], "channel", reference_what="the first channel",
                   fix="all channels of a case must share one voxel grid")


def no_weights_error(spec: "TaskSpec") -> SegkitError:
    return SegkitError(
        f"task '{spec.name}' has no pretrained weights published by its authors, so segkit will not produce an "
        f"untrained mask: {spec.weights_note} Then pass --model MODEL_DIR, or register the model zip with "
        f"`segkit install-task {spec.name} --custom-url file:///path/to/model.zip`."
    )


def file_identity(installed, name: str) -> dict:
    """{name, sha256, url, version} of one installed file; sha256 is the file's own, verified now."""
    entry = next(f for f in installed.manifest["files"] if f["name"] == name)
    return {"name": name, "sha256": installed.verified_sha256(name), "url": entry["url"], "version": entry["version"]}
