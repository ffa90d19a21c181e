"""segkit.models.blocks (issue 10): each shared block computes what the task's own copy computed
(hand-written references of the old code's maths, atol=0), one class serves both tasks, and weights
saved under the old key names load through each task's real loading path (model package, --resume)
with bit-identical outputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402

from segkit.models.blocks import ResidualBlock, SqueezeExcitation, conv_norm_act, upgrade_state_dict  # noqa: E402
from segkit.training.package import write_package  # noqa: E402

EXACT = {"atol": 0, "rtol": 0}

# the inverse tables: today's keys -> the names pre-change packages and checkpoints hold
AIS_BLOCK = r"^(decoder\.(?:stem|refine\.\d+|ups\.\d+\.block))\."
AIS_OLD_NAMES = tuple((AIS_BLOCK + new, r"\1." + old) for new, old in (
    (r"conv1\.", "body.0."), (r"norm1\.", "body.1."), (r"conv2\.", "body.3."), (r"norm2\.", "body.4."),
    (r"project\.", "shortcut."),
))
BRATS_OLD_NAMES = ((r"^bridge\.channel\.gate\.", "bridge.channel.fc."),)


def _perturb(module, seed: int, only_trainable: bool = False) -> None:
    """Move every (trainable) tensor off its init, so a tensor loaded into the wrong place shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point() or (only_trainable and name not in trainable):
                continue
            noise = torch.rand(tensor.shape, generator=generator) if name.endswith("running_var") else \
                0.1 * torch.randn(tensor.shape, generator=generator)
            tensor.add_(noise)


def _groups(channels: int) -> int:  # brats_autosam2's group_norm rule: min(8, C), lowered until it divides C
    groups = min(8, channels)
    while channels % groups:
        groups -= 1
    return groups


# ------------------------------------------------------------------------------ (b) the old maths


@pytest.mark.parametrize("c_in", [6, 12])
def test_residual_block_is_brats_old_residual_block(c_in):
    torch.manual_seed(1)
    block = ResidualBlock(3, c_in, 12, norm="group", act="relu")
    _perturb(block, 2)
    x = torch.randn(2, c_in, 5, 6, 7)
    p = dict(block.named_parameters())
    g = _groups(12)  # 6
    y = F.relu(F.group_norm(F.conv3d(x, p["conv1.weight"], padding=1), g, p["norm1.weight"], p["norm1.bias"], 1e-5))
    y = F.group_norm(F.conv3d(y, p["conv2.weight"], padding=1), g, p["norm2.weight"], p["norm2.bias"], 1e-5)
    skip = F.conv3d(x, p["project.weight"]) if c_in != 12 else x
    torch.testing.assert_close(block(x), F.relu(y + skip), **EXACT)
    assert ("project.weight" in p) == (c_in != 12) and not any(name.endswith("conv1.bias") for name in p)


@pytest.mark.parametrize("c_in", [8, 4])
def test_residual_block_is_ais_old_conv_block(c_in):
    torch.manual_seed(3)
    block = ResidualBlock(3, c_in, 4, norm="instance", act="leaky_relu")
    _perturb(block, 4)
    x = torch.randn(1, c_in, 3, 8, 8)
    p = dict(block.named_parameters())

    def norm(t, i):
        return F.instance_norm(t, weight=p[f"norm{i}.weight"], bias=p[f"norm{i}.bias"], eps=1e-5)

    y = F.leaky_relu(norm(F.conv3d(x, p["conv1.weight"], padding=1), 1), 0.01)
    y = norm(F.conv3d(y, p["conv2.weight"], padding=1), 2)
    skip = F.conv3d(x, p["project.weight"]) if c_in != 4 else x
    for mode in (block.train, block.eval):  # no running statistics: the same in both
        mode()
        torch.testing.assert_close(block(x), F.leaky_relu(y + skip, 0.01), **EXACT)
    assert not list(block.buffers())


@pytest.mark.parametrize("reduction, bias", [(16, False), (4, True)])  # cc_fodf's gate, brats_autosam2's
def test_squeeze_excitation_is_both_old_channel_gates(reduction, bias):
    torch.manual_seed(5)
    gate = SqueezeExcitation(64, reduction=reduction, bias=bias)
    _perturb(gate, 6)
    x = torch.randn(3, 64, 9, 10)
    p = dict(gate.named_parameters())
    assert p["gate.0.weight"].shape == (64 // reduction, 64) and ("gate.0.bias" in p) == bias
    hidden = F.relu(F.linear(x.mean(dim=(2, 3)), p["gate.0.weight"], p.get("gate.0.bias")))
    weights = torch.sigmoid(F.linear(hidden, p["gate.2.weight"], p.get("gate.2.bias")))
    torch.testing.assert_close(gate(x), x * weights[:, :, None, None], **EXACT)


def test_conv_norm_act_is_cc_old_conv_block_in_training_and_eval():
    torch.manual_seed(7)
    unit = torch.nn.Sequential(*conv_norm_act(2, 5, 8, 3, padding=1, norm="batch", act="leaky_relu"))
    _perturb(unit, 8)
    assert [k for k in unit.state_dict()] == ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                              "1.num_batches_tracked"]  # the old ConvBlock's keys
    x = torch.randn(4, 5, 12, 12)
    w, bn = unit[0].weight, unit[1]
    unit.eval()
    expected = F.batch_norm(F.conv2d(x, w, padding=1), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.1, 1e-5)
    torch.testing.assert_close(unit(x), F.leaky_relu(expected, 0.01), **EXACT)
    unit.train()
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    expected = F.batch_norm(F.conv2d(x, w, padding=1), mean, var, bn.weight, bn.bias, True, 0.1, 1e-5)
    torch.testing.assert_close(unit(x), F.leaky_relu(expected, 0.01), **EXACT)
    torch.testing.assert_close(bn.running_var, var, **EXACT)


@pytest.mark.parametrize("source, target", [(4, 1), (4, 8)])
def test_tap_projection_units_are_ais_old_layers(source, target):
    from segkit.tasks.ais_ncct.decoder import TapProjection

    torch.manual_seed(9)
    tap = TapProjection(6, 4, source, target)
    _perturb(tap, 10)
    x = torch.randn(1, 6, 2, 8, 8)
    p = dict(tap.named_parameters())
    y = F.conv3d(x, p["net.0.weight"])
    for step in range(2 if source > target else 1):  # two doublings or one halving, each conv -> norm -> act
        w = p[f"net.{1 + 3 * step}.weight"]
        y = F.conv_transpose3d(y, w, stride=(1, 2, 2)) if source > target else \
            F.conv3d(y, w, stride=(1, 2, 2), padding=(0, 1, 1))
        norm = 2 + 3 * step
        y = F.leaky_relu(F.instance_norm(y, weight=p[f"net.{norm}.weight"], bias=p[f"net.{norm}.bias"], eps=1e-5), 0.01)
    torch.testing.assert_close(tap(x), y, **EXACT)
    assert all(m.bias is None for m in tap.net if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)))


def test_brats_stem_unit_is_the_old_conv_group_norm_relu():
    from segkit.tasks.brats_autosam2.network import NetworkConfig, UNet3D

    torch.manual_seed(11)
    stem = UNet3D(NetworkConfig(width=0.25)).stem
    _perturb(stem, 12)
    x = torch.randn(1, 4, 8, 8, 8)
    conv, norm = stem[0], stem[1]
    assert conv.bias is None and norm.num_groups == _groups(4)
    expected = F.relu(F.group_norm(F.conv3d(x, conv.weight, padding=2), _groups(4), norm.weight, norm.bias, 1e-5))
    torch.testing.assert_close(stem[2](stem[1](stem[0](x))), expected, **EXACT)


# ------------------------------------------------------------------------------ (c) one class, two tasks


def test_the_same_block_classes_serve_both_tasks():
    from segkit.tasks.ais_ncct import decoder as ais_decoder
    from segkit.tasks.brats_autosam2 import network as brats
    from segkit.tasks.cc_fodf import network as cc

    unet = brats.UNet3D(brats.NetworkConfig(width=0.25))
    decoder = ais_decoder.UnetrDecoder([(8, 4)] * 4, (), in_channels=1, feature_size=4)
    assert all(isinstance(m, ResidualBlock) for m in (unet.stem[3], *unet.down, *unet.up, decoder.stem, *decoder.refine))
    assert all(isinstance(up.block, ResidualBlock) for up in decoder.ups)
    fusion = cc.HybridFeatureFusion(cnn_channels=32, sam_channels=16, sam_pool=1)
    bridge = brats.Bridge(c_in=8)
    assert all(isinstance(m, SqueezeExcitation) for m in (fusion.sam_attention, fusion.cnn_attention,
                                                          fusion.concat_attention, bridge.channel))
    assert not hasattr(brats, "ResidualBlock3d") and not hasattr(brats, "ChannelAttention")
    assert not hasattr(ais_decoder, "ConvBlock") and not hasattr(cc, "ConvBlock")
    assert cc.SqueezeExcitation is SqueezeExcitation and brats.group_norm.__module__ == "segkit.models.blocks"


def test_upgrade_renames_only_what_a_pattern_matches_and_twice_is_once():
    from segkit.tasks.ais_ncct.network import STATE_RENAMES

    state = {"decoder.stem.body.0.weight": 1, "decoder.ups.2.block.shortcut.weight": 2, "backbone.body.0.weight": 3,
             "decoder.projections.0.net.1.weight": 4}
    once = upgrade_state_dict(state, STATE_RENAMES)
    assert list(once) == ["decoder.stem.conv1.weight", "decoder.ups.2.block.project.weight", "backbone.body.0.weight",
                          "decoder.projections.0.net.1.weight"]
    assert upgrade_state_dict(once, STATE_RENAMES) == once and upgrade_state_dict(state, ()) is state


# ------------------------------------------------------------------------------ (a) old keys, real loaders


def test_cc_fodf_package_keys_did_not_change_and_load_bit_identical(tmp_path):
    from segkit.tasks.cc_fodf.network import NetworkConfig, build_network
    from segkit.tasks.cc_fodf.task import load_model_package

    config = NetworkConfig(slice_size=32, width=0.125, sam_grid=14)
    torch.manual_seed(0)
    net = build_network(config)
    _perturb(net, 1)
    state = net.state_dict()  # no renames in cc_fodf: the old ConvBlock / gate layout is today's
    assert {"cnn.levels.0.0.0.weight", "cnn.levels.0.1.1.running_var", "decoder.up1.0.bias",
            "fusion.sam_attention.gate.0.weight", "fusion.concat_attention.gate.2.weight"} <= set(state)
    card = {"format": "segkit-cc_fodf-model", "format_version": 1, "task": "cc_fodf", "network": config.to_dict()}
    loaded = load_model_package(write_package(tmp_path / "model", state, card)).net
    peaks = torch.randn(2, 9, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(peaks), net.eval()(peaks), **EXACT)


def _brats_model(seed: int):
    from segkit.tasks.brats_autosam2.hybrid import AutoSam2
    from segkit.tasks.brats_autosam2.network import NetworkConfig

    config = NetworkConfig(width=0.25)
    torch.manual_seed(seed)
    return AutoSam2(config), config


def _brats_outputs(model) -> list:
    generator = torch.Generator().manual_seed(21)
    volume = torch.randn(1, 4, 16, 16, 16, generator=generator)
    with torch.no_grad():
        logits, mid = model.eval().unet(volume)
        return [logits, mid, model.bridge(mid[:, :, 1]), model.mapper(volume[:, :, 5])]


def _brats_old_state(model) -> dict:
    old = upgrade_state_dict(model.state_dict(), BRATS_OLD_NAMES)
    assert {k for k in old if k.startswith("bridge.channel.")} == {
        "bridge.channel.fc.0.weight", "bridge.channel.fc.0.bias", "bridge.channel.fc.2.weight", "bridge.channel.fc.2.bias"}
    return old


def test_brats_autosam2_old_package_loads_bit_identical(tmp_path):
    from segkit.tasks.brats_autosam2.package import PACKAGE_FORMAT, load_package

    model, config = _brats_model(0)
    _perturb(model, 1)
    card = {"format": PACKAGE_FORMAT, "task": "brats_autosam2", "network": config.to_dict(), "sam": "litemedsam"}
    loaded, _ = load_package(write_package(tmp_path / "model", _brats_old_state(model), card))
    for ours, theirs in zip(_brats_outputs(loaded), _brats_outputs(model)):
        torch.testing.assert_close(ours, theirs, **EXACT)


def test_brats_autosam2_old_checkpoint_resumes_bit_identical(tmp_path):
    from segkit.tasks.brats_autosam2.network import STATE_RENAMES
    from segkit.training import checkpoints as kit

    model, config = _brats_model(0)
    _perturb(model, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    saved = {"model": _brats_old_state(model), "optimizer": optimizer.state_dict(), "network": config.to_dict(),
             "state": {"epoch": 3}}
    kit.atomic_torch_save(saved, kit.last_checkpoint(tmp_path))
    fresh, _ = _brats_model(1)
    parts = kit.Trainables(fresh, torch.optim.AdamW(fresh.parameters()), config.to_dict(), renames=STATE_RENAMES)
    assert kit.restore(kit.last_checkpoint(tmp_path), parts) == {"epoch": 3}
    for ours, theirs in zip(_brats_outputs(fresh), _brats_outputs(model)):
        torch.testing.assert_close(ours, theirs, **EXACT)


def _ais_model():
    from segkit.tasks.ais_ncct.network import NetworkConfig, build_network

    config = NetworkConfig(slice_size=32, depth=4, prompt_channels=(8, 16, 32, 64), feature_size=4)
    torch.manual_seed(0)  # the frozen random backbone is the seed's: the same in every model built here
    return build_network(config, pretrained=False), config


def _ais_output(net):
    volume = torch.randn(1, 2, 4, 32, 32, generator=torch.Generator().manual_seed(31))
    with torch.no_grad():
        return net.eval()(volume)


def _ais_old(state: dict) -> dict:
    old = upgrade_state_dict(state, AIS_OLD_NAMES)
    assert {k[len("decoder.stem."):] for k in old if k.startswith("decoder.stem.")} == {
        "body.0.weight", "body.1.weight", "body.1.bias", "body.3.weight", "body.4.weight", "body.4.bias", "shortcut.weight"}
    assert not any(k.startswith("decoder.") and (".conv1." in k or ".project." in k) for k in old)
    return old


def test_ais_ncct_old_package_loads_bit_identical(tmp_path):
    from segkit.tasks.ais_ncct.package import PACKAGE_FORMAT, load_package

    net, config = _ais_model()
    _perturb(net, 1, only_trainable=True)
    stats = {"mean": 30.0, "std": 8.0, "percentile_00_5": 0.0, "percentile_99_5": 60.0}
    card = {"format": PACKAGE_FORMAT, "task": "ais_ncct", "network": config.to_dict(),
            "backbone": {"name": "litemedsam", "pretrained": False}, "spacing_mm": None,
            "normalisation": [stats, stats], "training": {"validation_dice": None}}
    loaded = load_package(write_package(tmp_path / "model", _ais_old(net.state_dict()), card)).net
    torch.testing.assert_close(_ais_output(loaded), _ais_output(net), **EXACT)


def test_ais_ncct_old_checkpoint_resumes_bit_identical(tmp_path):
    from segkit.tasks.ais_ncct.network import STATE_RENAMES
    from segkit.training import checkpoints as kit

    net, config = _ais_model()
    _perturb(net, 1, only_trainable=True)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad])
    saved = {"model": _ais_old(net.trainable_state()), "optimizer": optimizer.state_dict(),
             "network": config.to_dict(), "state": {"epoch": 1}}
    kit.atomic_torch_save(saved, kit.last_checkpoint(tmp_path))
    fresh, _ = _ais_model()  # strict=False here (the backbone is not saved): a key left unrenamed would go unseen
    trainable = [p for p in fresh.parameters() if p.requires_grad]
    parts = kit.Trainables(fresh, torch.optim.AdamW(trainable), config.to_dict(), weights=fresh.trainable_state,
                           strict=False, renames=STATE_RENAMES)
    kit.restore(kit.last_checkpoint(tmp_path), parts)
    torch.testing.assert_close(_ais_output(fresh), _ais_output(net), **EXACT)
