"""Network sizes for `segkit train -task cc_fodf`: `--preset paper` (SC2S-Net's own) or `--preset cpu`.

Without a preset, a GPU trains at the paper's sizes; a machine without one is refused with the
expected time of one epoch at those sizes (counted, not guessed: the network's floating-point
operations for one batch, forward and backward, on the meta device, over this machine's measured
convolution speed), so nobody starts a week-long CPU run by accident. Explicit --slice-size,
--width, --sam-grid or --batch-size override the preset's value of that size.
"""

from __future__ import annotations

import time

from segkit.errors import SegkitError

SIZES = ("slice_size", "width", "sam_grid", "batch_size")
PRESETS = {
    "paper": {"slice_size": 144, "width": 1.0, "sam_grid": 64, "batch_size": 32},  # METHODS.md
    "cpu": {"slice_size": 48, "width": 0.25, "sam_grid": 14, "batch_size": 16},  # benchmarks/README.md
}


def describe(preset: str) -> str:
    p = PRESETS[preset]
    return f"slice {p['slice_size']}, width {p['width']:g}, SAM grid {p['sam_grid']}, batch {p['batch_size']}"


def resolve_sizes(options, architecture: str, device: str, batches_per_epoch: int, say,
                  resumed: dict | None = None) -> dict:
    """{slice_size, width, sam_grid, batch_size} for this run (see the module docstring); `resumed`:
    the sizes of the run --resume continues, which it keeps unless a preset or a size is given."""
    explicit = {name: getattr(options, name) for name in SIZES if getattr(options, name) is not None}
    preset = options.preset
    if preset is None and resumed is not None:
        return {**resumed, **explicit}
    needed = [name for name in SIZES if name != "sam_grid" or architecture != "unet"]  # the CNN has no SAM grid
    if preset is None and all(name in explicit for name in needed):
        return {**PRESETS["paper"], **explicit}
    on_gpu = str(device).startswith("cuda")
    if preset is None and on_gpu:
        preset = "paper"
        say(f"cc_fodf: training at the paper's sizes ({describe('paper')}) on {device}")
    elif preset is None or (preset == "paper" and not on_gpu):
        sizes = {**PRESETS["paper"], **explicit}
        seconds = epoch_seconds(architecture, sizes, batches_per_epoch)
        expected = (f"at the paper's sizes ({describe('paper')}) one epoch of {batches_per_epoch} batches takes "
                    f"at least about {format_duration(seconds)} on this machine's CPU (no GPU)")
        if preset is None:
            raise SegkitError(f"cc_fodf: {expected}; pass --preset paper to train at them anyway, or --preset cpu "
                              f"for the reduced sizes ({describe('cpu')})")
        say(f"cc_fodf: {expected}")
    return {**PRESETS[preset], **explicit}


def resumed_sizes(output, say) -> dict | None:
    """The sizes the run in `output` was started with, from its last checkpoint (None without one)."""
    from pathlib import Path

    from segkit.runtime.checkpoint import load_data

    path = Path(output) / "checkpoints" / "last.pt"
    if not path.is_file():
        return None
    saved = load_data(path)
    sizes = {name: saved["network"][name] for name in SIZES if name in saved["network"]}
    # runs started before the batch size was saved: the reduced size, said aloud
    sizes["batch_size"] = saved["state"].get("batch_size", PRESETS["cpu"]["batch_size"])
    say(f"cc_fodf: resuming at the run's own sizes (slice {sizes['slice_size']}, width {sizes['width']:g}, "
        f"SAM grid {sizes['sam_grid']}, batch {sizes['batch_size']})")
    return sizes


def epoch_seconds(architecture: str, sizes: dict, batches: int) -> float:
    """Expected seconds of `batches` training steps (forward + backward) on this CPU."""
    return batch_flops(architecture, sizes) * batches / cpu_flops_per_second()


def batch_flops(architecture: str, sizes: dict) -> float:
    """Floating-point operations of one training batch, forward and backward (counted on 'meta')."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from segkit.tasks.cc_fodf.network import NetworkConfig, build_network

    config = NetworkConfig(architecture=architecture, slice_size=sizes["slice_size"], width=sizes["width"],
                           sam_grid=sizes["sam_grid"])
    with torch.device("meta"):
        net = build_network(config)
        x = torch.empty(sizes["batch_size"], 9, config.slice_size, config.slice_size)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return float(counter.get_total_flops())


def cpu_flops_per_second() -> float:
    """This CPU's speed on a convolution like the network's (forward + backward, best of three)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(4, 64, 48, 48)
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    flops = float(counter.get_total_flops())
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        conv(x).sum().backward()
        best = min(best, time.perf_counter() - started)
    return flops / best


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
