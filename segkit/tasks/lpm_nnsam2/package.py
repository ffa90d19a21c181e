"""The model package `segkit train -task lpm_nnsam2` writes and `segment --model DIR` runs.

    DIR/model_card.json          task, rounds, Dice per round, the final round's model folder
    DIR/round_N/                 each round's nnU-Net workspace, model zip and selection log
    DIR/final/<Trainer__Plans__Config>/   the last round's nnU-Net model folder
"""

from __future__ import annotations

import json
from pathlib import Path

from segkit.errors import SegkitError

from segkit.training.package import CARD_NAME as CARD


def model_folder_of(package: Path) -> Path:
    package = Path(package).expanduser()
    card = package / CARD
    if not card.is_file():
        raise SegkitError(f"{package}: not an lpm_nnsam2 model package (no {CARD}); train one with `segkit train -task lpm_nnsam2`")
    data = json.loads(card.read_text(encoding="utf-8"))
    if data.get("task") != "lpm_nnsam2":
        raise SegkitError(f"{card}: this package is for task '{data.get('task')}', not lpm_nnsam2")
    folder = package / data["final_model"]
    if not (folder / "dataset.json").is_file():
        raise SegkitError(f"{folder}: the package's final nnU-Net model folder is missing")
    return folder
