"""brats_autosam2 model packages: model.pt (UNet, bridge and mapper weights) + model_card.json.

`segkit train -task brats_autosam2` writes one; `segment --model` reads it (or the package
registered with `install-task --custom-url`). The card names the network settings, the SAM the
model was trained with (the default SAM stage at inference), the label meaning and the weights'
sha256, verified before loading. SAM's own weights are never in the package: they come through
the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.training.package import CARD_NAME, ModelPackageError, network_settings, read_format_card, verified_weights

PACKAGE_FORMAT = "segkit-brats_autosam2-model"
LABELS = {1: "NCR (necrotic tumour core)", 2: "ED (peritumoral oedema)", 3: "ET (enhancing tumour)"}  # BraTS 2023


@dataclass
class PackageInfo:
    folder: Path
    card: dict
    sha256: str


def package_root(path: Path, what: str) -> Path:
    from segkit.training.package import find_card

    card = find_card(Path(path))
    if card is None:
        raise ModelPackageError(f"{what}: {path} holds no {CARD_NAME}; it is not a brats_autosam2 model package "
                                "(make one with `segkit train -task brats_autosam2`)")
    return card.parent


def find_model_folder(spec, model: Path | str | None) -> Path:
    """--model if given, else the package registered with install-task; otherwise refuse plainly."""
    from segkit.tasks.base import no_weights_error

    if model is not None:
        return package_root(Path(model), f"--model {model}")
    from segkit.registry.store import installed_task

    from segkit.training.package import find_card

    installed = installed_task(spec.name)
    for entry in (installed.manifest.get("files", []) if installed is not None else []):
        if find_card(installed.root / entry["local_path"]) is not None:  # the registry's SAM file is not a package
            return package_root(installed.root / entry["local_path"], f"the installed {spec.name} model")
    raise no_weights_error(spec)


def read_card(folder: Path) -> dict:
    return read_format_card(Path(folder) / CARD_NAME, PACKAGE_FORMAT)


def load_package(folder: Path, device: str = "cpu"):
    """(AutoSam2 without its SAM stage, PackageInfo): card read, weights verified, then loaded."""
    from segkit.models.blocks import upgrade_state_dict
    from segkit.runtime.checkpoint import load_data
    from segkit.tasks.brats_autosam2.hybrid import AutoSam2
    from segkit.tasks.brats_autosam2.network import STATE_RENAMES, NetworkConfig

    card = read_card(folder)
    weights, sha = verified_weights(folder, card)
    config = network_settings(folder, card, NetworkConfig)
    model = AutoSam2(config)
    try:
        model.load_state_dict(upgrade_state_dict(load_data(weights), STATE_RENAMES), strict=True)
    except RuntimeError as exc:
        raise ModelPackageError(f"{weights}: does not fit the network the card describes ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), PackageInfo(Path(folder), card, sha)
