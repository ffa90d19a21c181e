"""The intensity window LiteMedSAM sees: CT in HU needs one, or air, bone and metal set the scale.

LiteMedSAM was trained on images MedSAM's own preprocessing had windowed (CT: level 40, width 400,
then scaled to 0-255). segkit's slice preprocessing min-max scales each slice, as the official
inference script does, so on raw CT a -1000 HU background and a 3000 HU implant squeeze soft
tissue into a few percent of the range. Clipping to a window first gives the model what it was
trained on. No torch here: the options module and the CLI's checks import it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segkit.tasks.options import OptionError

# name -> (lowest, highest) HU, from the usual level/width pairs
PRESETS = {
    "soft-tissue": (-160.0, 240.0),  # level 40, width 400: MedSAM's own CT preprocessing
    "brain": (0.0, 80.0),  # level 40, width 80
    "lung": (-1350.0, 150.0),  # level -600, width 1500
    "bone": (-500.0, 1300.0),  # level 400, width 1800
}
CT_DEFAULT = "soft-tissue"
NO_WINDOW = "none"


@dataclass(frozen=True)
class Window:
    name: str  # a preset's name, or "custom"
    low: float
    high: float

    def apply(self, array: np.ndarray) -> np.ndarray:
        return np.clip(array, self.low, self.high).astype(np.float32)

    def to_dict(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high}


def parse_window(text: str | None) -> Window | None:
    """'soft-tissue' | 'brain' | 'lung' | 'bone' | 'none' | 'lo,hi' -> Window (None for 'none' or no text)."""
    if text is None or text.strip().lower() == NO_WINDOW:
        return None
    name = text.strip().lower()
    if name in PRESETS:
        return Window(name, *PRESETS[name])
    parts = name.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise OptionError(
            f"--window {text!r}: give lo,hi (e.g. -160,240) or one of {', '.join(PRESETS)}, {NO_WINDOW}"
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise OptionError(f"--window {text!r}: needs finite lo < hi")
    return Window("custom", low, high)


def chosen_window(window: str | None, modality: str, header_modality: str | None) -> Window | None:
    """--window if given; else the CT default when the image is CT (--modality, or the DICOM header)."""
    if window is not None:
        return parse_window(window)
    is_ct = modality == "ct" or (modality == "auto" and header_modality == "CT")
    return parse_window(CT_DEFAULT) if is_ct else None
