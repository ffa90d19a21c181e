from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segkit.errors import SegkitError
from segkit.tasks.base import Inferred, TaskRunner

CARD = "model_card.json"


class LevelRunner(TaskRunner):
    def model_key(self) -> tuple:
        return (self.options.level, str(self.options.model))

    def load_model(self) -> float:
        if self.options.level is not None:
            return float(self.options.level)
        if self.options.model is None:
            raise SegkitError("task 'tiny' needs --level or --model")
        return float(json.loads((Path(self.options.model) / CARD).read_text())["level"])

    def infer(self, level, prepared, progress) -> Inferred:
        return Inferred((prepared.arrays[0] > level).astype(np.uint8), {"level": level})


def train_level(spec, common, options, say) -> list[tuple]:
    import nibabel as nib

    if options.pairs is None:
        raise SegkitError("train -task tiny needs --pairs DIR")
    inside, outside = [], []
    for label in sorted(Path(options.pairs).glob("*_label.nii.gz")):
        image = np.asarray(nib.load(str(label).replace("_label", "")).dataobj, dtype=float)
        mask = np.asarray(nib.load(str(label)).dataobj) > 0
        inside.append(image[mask].mean())
        outside.append(image[~mask].mean())
    level = (np.mean(inside) + np.mean(outside)) / 2
    out = Path(common.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / CARD).write_text(json.dumps({"task": spec.name, "level": level}))
    say(f"learned level {level:.3f} from {len(inside)} cases")
    return [("model", out)]
