"""The ais_ncct model package: what `segkit train -task ais_ncct` writes and `segment` reads.

    DIR/model_card.json   format, task, network settings, backbone (name, pretrained, the verified
                          sha256 of its weights), model spacing, the CT normalisation of both
                          channels (training-set foreground statistics), weights file and sha256,
                          training summary
    DIR/model.pt          the trained tensors: adapters, prompt generator and decoder (a pretrained
                          backbone's frozen weights come from the registry; a random one is stored)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segkit.training.package import CARD_NAME, ModelPackageError, network_settings, read_format_card, verified_weights

PACKAGE_FORMAT = "segkit-ais_ncct-model"


@dataclass
class LoadedModel:
    net: object
    card: dict
    folder: Path
    sha256: str

    @property
    def backbone(self) -> str:
        return self.card["network"]["backbone"]


def read_card(folder: Path) -> dict:
    from segkit.training.package import find_card

    card_path = find_card(folder)
    if card_path is None:
        raise ModelPackageError(f"{folder}: holds no {CARD_NAME}; it is not an ais_ncct model package "
                                f"(train one with `segkit train -task ais_ncct`)")
    card = read_format_card(card_path, PACKAGE_FORMAT)
    card["_folder"] = str(card_path.parent)
    return card


def find_package(spec, model) -> Path:
    """--model DIR, else an installed package (install-task --custom-url); otherwise refuse plainly."""
    from segkit.registry.store import installed_task
    from segkit.tasks.base import no_weights_error
    from segkit.training.package import find_card

    if model is not None:
        return Path(read_card(Path(model))["_folder"])
    installed = installed_task(spec.name)
    for entry in (installed.manifest["files"] if installed is not None else []):
        card = find_card(installed.root / entry["local_path"])
        if card is not None:
            return Path(read_card(card.parent)["_folder"])
    raise no_weights_error(spec)


def check_backbone(card: dict, requested: str | None, folder) -> None:
    trained = card["network"]["backbone"]
    if requested is not None and requested != trained:
        raise ModelPackageError(f"--backbone {requested}: the model {folder} was trained with the {trained} backbone; "
                                f"pass --backbone {trained} (or none), or train a model with {requested}")


def load_package(folder: Path, device: str = "cpu") -> LoadedModel:
    """Card, weights' sha256, network rebuilt with its backbone, tensors loaded (data only)."""
    from segkit.models.blocks import upgrade_state_dict
    from segkit.runtime.checkpoint import load_data
    from segkit.tasks.ais_ncct.network import STATE_RENAMES, NetworkConfig, build_network

    card = read_card(folder)
    folder = Path(card["_folder"])
    weights, actual = verified_weights(folder, card)
    config = network_settings(folder, card, NetworkConfig)
    pretrained = bool(card["backbone"]["pretrained"])
    net = build_network(config, pretrained=pretrained)
    state = upgrade_state_dict(load_data(weights), STATE_RENAMES)  # packages written before the rename
    missing, unexpected = net.load_state_dict(state, strict=False)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    if unexpected or (set(missing) & trainable) or (not pretrained and missing):
        raise ModelPackageError(f"{weights}: does not match the network in its card "
                                f"({len(unexpected)} unexpected, {len(missing)} missing tensors)")
    return LoadedModel(net.to(device).eval(), card, folder, actual)


def write_package(folder: Path, net, card: dict, zip_path: Path | None = None) -> Path:
    """The package through segkit.training's writer: with a pretrained backbone only the trained
    tensors (the frozen backbone comes from the registry at load time), else every tensor; with
    zip_path, also zipped for `install-task ais_ncct --custom-url`."""
    from segkit.training.package import write_package as write_model_package

    state = net.trainable_state() if card["backbone"]["pretrained"] else net.state_dict()
    return write_model_package(Path(folder), state, {**card, "format": PACKAGE_FORMAT, "task": "ais_ncct"},
                               zip_path=zip_path)
