"""nnunetv2's sliding window and export, a slab of rows at a time (segkit.engines.nnunet.streaming).

The arithmetic is nnunetv2's, operation for operation, so the labels match its own: tiles in its
order, each prediction (mirrored with --tta) times its float16 Gaussian added into float16 sums,
sums divided by the float16 weight sum, folds added in float16 and divided by their count, logits
resampled back in float64 and stored as float16, then its label manager's argmax (or regions).
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from segkit.engines.nnunet.row_resample import RowResampler

OUTPUT_ROWS_PER_STEP = 8  # label rows resampled at a time: 8 x 512 x 512 float64 per class (17 MB), and copies


def slide_tiles(predictor, model_rows, writer: "LabelWriter") -> None:
    """Every tile of nnunetv2's sliding window over the model grid; rows go to `writer` as they finish."""
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    patch = tuple(predictor.configuration_manager.patch_size)
    padded_shape, pad = _padding(model_rows.shape, patch)
    slicers = predictor._internal_get_sliding_window_slicers(padded_shape)
    gaussian = compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device("cpu"))
    folds = predictor.list_of_parameters
    sums = TileSums(predictor.label_manager.num_segmentation_heads, len(folds), padded_shape[1:])
    network = predictor.network.to(predictor.device).eval()
    if len(folds) == 1:
        network.load_state_dict(folds[0])
    autocast = torch.autocast("cuda") if predictor.device.type == "cuda" else nullcontext()
    with torch.inference_mode(), autocast:
        for slicer in slicers:
            r0, r1 = _rows_of(slicer)
            _emit(sums.finish_before(r0), sums, pad, model_rows.shape, writer)
            block = _padded_rows(model_rows, r0, r1, pad, padded_shape)
            tile = torch.from_numpy(np.ascontiguousarray(block[_local(slicer, r0)]))[None].to(predictor.device)
            local = _local(slicer, sums.reach(r1))
            for fold, parameters in enumerate(folds):
                if len(folds) > 1:
                    network.load_state_dict(parameters)
                prediction = predictor._internal_maybe_mirror_and_predict(tile)[0].to("cpu")
                prediction *= gaussian
                sums.logits[fold][local] += prediction
            sums.weights[local[1:]] += gaussian
    _emit(sums.finish_before(padded_shape[0]), sums, pad, model_rows.shape, writer)
    writer.finish()


def _padding(shape, patch) -> tuple[tuple[int, ...], list[int]]:
    """acvl's pad_nd_image as nnunetv2 calls it: the last len(patch) axes up to the patch, content centred."""
    offset = len(shape) - len(patch)
    padded = [max(n, patch[i - offset]) if i >= offset else n for i, n in enumerate(shape)]
    return tuple(padded), [(p - n) // 2 for p, n in zip(padded, shape)]


def _rows_of(slicer) -> tuple[int, int]:
    first = slicer[1]
    return (first, first + 1) if isinstance(first, (int, np.integer)) else (first.start, first.stop)


def _local(slicer, r0: int):
    """The slicer with its first-axis part counted from row r0."""
    first = slicer[1]
    moved = first - r0 if isinstance(first, (int, np.integer)) else slice(first.start - r0, first.stop - r0)
    return (slicer[0], moved, *slicer[2:])


def _padded_rows(model_rows, r0: int, r1: int, pad, padded_shape) -> np.ndarray:
    """Padded-grid rows [r0, r1): the model's rows with nnunetv2's zero padding around them."""
    a, b = max(r0 - pad[0], 0), min(r1 - pad[0], model_rows.shape[0])
    rows = model_rows.get(a, b)
    if not any(pad) and tuple(padded_shape) == tuple(model_rows.shape):
        return rows
    block = np.zeros((rows.shape[0], r1 - r0, *padded_shape[1:]), dtype=np.float32)
    block[:, a + pad[0] - r0:b + pad[0] - r0, pad[1]:pad[1] + rows.shape[2], pad[2]:pad[2] + rows.shape[3]] = rows
    return block


def _emit(padded_logits, sums, pad, model_shape, writer) -> None:
    """Finished padded rows, padding removed, to the writer."""
    if padded_logits is None:
        return
    start = sums.finished_from
    a, b = max(start, pad[0]), min(start + padded_logits.shape[1], pad[0] + model_shape[0])
    if b <= a:
        return
    inner = padded_logits[:, a - start:b - start, pad[1]:pad[1] + model_shape[1], pad[2]:pad[2] + model_shape[2]]
    writer.push(a - pad[0], inner.numpy())


class TileSums:
    """Per fold, the float16 sums of Gaussian-weighted tile logits, and the float16 weight sum, for
    the rows [first, first + n) that tiles still reach."""

    def __init__(self, heads: int, folds: int, plane):
        import torch

        self.first = self.finished_from = 0
        self.logits = [torch.zeros((heads, 0, *plane), dtype=torch.half) for _ in range(folds)]
        self.weights = torch.zeros((0, *plane), dtype=torch.half)

    def reach(self, r1: int) -> int:
        """Grow the sums to row r1; returns the first row held (tile slicers count from it)."""
        import torch

        missing = r1 - self.first - self.weights.shape[0]
        if missing > 0:
            self.logits = [torch.cat([s, s.new_zeros((s.shape[0], missing, *s.shape[2:]))], 1) for s in self.logits]
            self.weights = torch.cat([self.weights, self.weights.new_zeros((missing, *self.weights.shape[1:]))])
        return self.first

    def finish_before(self, r: int):
        """Rows [first, r) are final: their fold-averaged logits (float16), dropped from the sums."""
        import torch

        n = min(r, self.first + self.weights.shape[0]) - self.first
        if n <= 0:
            return None
        weights = self.weights[:n]
        averaged = None
        for fold in self.logits:
            part = fold[:, :n].clone()
            torch.div(part, weights, out=part)
            averaged = part if averaged is None else averaged.add_(part)
        if len(self.logits) > 1:
            averaged /= len(self.logits)
        self.logits = [s[:, n:].clone() for s in self.logits]
        self.weights = self.weights[n:].clone()
        self.finished_from, self.first = self.first, self.first + n
        return averaged


class LabelWriter:
    """Model-grid logits rows in, label rows out: nnunetv2's export (resample back, argmax or
    regions) for each run of output rows whose input rows have all arrived."""

    def __init__(self, resampler: RowResampler, label_manager, output: np.ndarray):
        self.resampler, self.label_manager, self.output = resampler, label_manager, output
        self.first = self.next_output = 0
        self.pending = None  # float16 logits of model rows [first, first + n)
        self.complete = False

    def push(self, start: int, logits: np.ndarray) -> None:
        if self.pending is None:
            self.first, self.pending = start, logits
        else:
            self.pending = np.concatenate([self.pending, logits], axis=1)
        self._write_ready()

    def finish(self) -> None:
        self.complete = True
        self._write_ready()
        if self.next_output != self.output.shape[0]:
            raise RuntimeError(f"nnU-Net export stopped at row {self.next_output} of {self.output.shape[0]}")

    def _write_ready(self) -> None:
        arrived = self.first + (0 if self.pending is None else self.pending.shape[1])
        while self.next_output < self.output.shape[0]:
            o0, o1 = self.next_output, min(self.next_output + OUTPUT_ROWS_PER_STEP, self.output.shape[0])
            while o1 > o0 and not self.complete and self.resampler.source_rows(o0, o1)[1] > arrived:
                o1 -= 1
            if o1 == o0:
                return
            self._write(o0, o1)
            self.next_output = o1
            self._drop_before(self.resampler.source_rows(o1, o1 + 1)[0] if o1 < self.output.shape[0] else arrived)

    def _write(self, o0: int, o1: int) -> None:
        s0, s1 = self.resampler.source_rows(o0, o1)
        rows = self.pending[:, s0 - self.first:s1 - self.first]
        if not self.resampler.identity:  # nnunetv2: float64 resampling into a float16 array
            rows = np.stack([self.resampler.resample(c.astype(np.float64), s0, o0, o1) for c in rows]).astype(np.float16)
        self.output[o0:o1] = self.label_manager.convert_logits_to_segmentation(rows)

    def _drop_before(self, row: int) -> None:
        if row > self.first:
            self.pending = self.pending[:, row - self.first:].copy()
            self.first = row
