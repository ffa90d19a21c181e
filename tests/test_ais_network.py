"""AISCT-SAM modules, each alone: shapes and what trains (random weights; real sizes where cheap)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from segkit.tasks.ais_ncct.adapters import (AdaptedBlock, DepthAdapter, GatedLoRA, GatedMLPAdapter,  # noqa: E402
                                            LoRAQKV)
from segkit.tasks.ais_ncct.decoder import TapProjection, UnetrDecoder  # noqa: E402
from segkit.tasks.ais_ncct.network import AisctSam, NetworkConfig, count_trainable  # noqa: E402
from segkit.tasks.ais_ncct.prompts import SelfPromptGenerator  # noqa: E402


def _trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_gated_lora_rank4_and_starts_at_zero():
    lora = GatedLoRA(768, 768, rank=4)
    assert lora.down.weight.shape == (4, 768) and lora.up.weight.shape == (768, 4)
    assert _trainable(lora) == 768 * 4 * 2 + 769  # A, B and the gate's Linear(768 -> 1)
    tokens = torch.randn(2, 16, 16, 768)
    assert torch.count_nonzero(lora(tokens)) == 0
    torch.nn.init.normal_(lora.up.weight)
    out = lora(tokens)
    assert out.shape == tokens.shape and torch.count_nonzero(out) > 0


def test_lora_qkv_changes_only_q_and_v():
    qkv = torch.nn.Linear(8, 24)
    index = torch.arange(24)
    wrapped = LoRAQKV(qkv, index[:8], index[16:], rank=4)
    for lora in (wrapped.lora_q, wrapped.lora_v):
        torch.nn.init.normal_(lora.up.weight)
    tokens = torch.randn(3, 5, 8)
    delta = wrapped(tokens) - qkv(tokens)
    assert torch.count_nonzero(delta[..., 8:16]) == 0  # k untouched
    assert torch.count_nonzero(delta[..., :8]) > 0 and torch.count_nonzero(delta[..., 16:]) > 0


def test_mlp_adapter_is_768_64_768_with_a_gate():
    adapter = GatedMLPAdapter(768, 64)
    assert _trainable(adapter) == (768 * 64 + 64) + (64 * 768 + 768) + 769
    assert adapter(torch.randn(2, 10, 768)).shape == (2, 10, 768)


def test_depth_adapter_mixes_slices_and_only_within_a_volume():
    adapter = DepthAdapter(32, hidden=16)
    torch.nn.init.normal_(adapter.net[-1].weight)
    tokens = torch.randn(2 * 4, 9, 32)  # 2 volumes x 4 slices, 3x3 tokens
    out = adapter(tokens, depth=4, grid=(3, 3))
    assert out.shape == tokens.shape
    changed = tokens.clone()
    changed[1] += 5.0  # slice 1 of volume 0
    delta = (adapter(changed, depth=4, grid=(3, 3)) - out).abs().flatten(1).sum(1)
    assert delta[0] > 0 and delta[2] > 0  # its neighbours see it (3x3x3 depthwise)
    assert delta[3] == 0 and delta[4:].sum() == 0  # two slices away, and the other volume, do not


def test_adapted_block_leaves_a_frozen_block_unchanged_until_trained():
    block = torch.nn.Linear(16, 16)
    for p in block.parameters():
        p.requires_grad_(False)
    adapted = AdaptedBlock(block, 16, "tokens", mlp_hidden=8, depth_hidden=8)
    adapted.depth, adapted.grid = 2, (2, 2)
    tokens = torch.randn(4, 4, 16)
    assert torch.allclose(adapted(tokens), block(tokens))
    assert _trainable(adapted) == _trainable(adapted.mlp_adapter) + _trainable(adapted.depth_adapter)


def test_self_prompt_generator_shares_weights_and_gives_five_differences():
    generator = SelfPromptGenerator((32, 64, 128, 256))
    ct = torch.randn(1, 1, 4, 64, 64)
    raw, differences = generator(ct, ct.flip(-1))
    assert raw.shape == ct.shape and torch.allclose(raw, ct - ct.flip(-1))
    assert [tuple(d.shape) for d in differences] == [(1, c, 4, 64 // s, 64 // s) for c, s in
                                                     ((32, 2), (64, 4), (128, 8), (256, 16))]
    same_raw, same = generator(ct, ct.clone())  # one set of weights: identical inputs, zero prompts
    assert torch.count_nonzero(same_raw) == 0 and all(torch.count_nonzero(d) == 0 for d in same)


def test_self_prompt_reconstruction_units_follow_their_definitions():
    """SRU and CRU (Li et al., CVPR 2023) as written in the paper, against the memory-lean modules."""
    from segkit.tasks.ais_ncct.prompts import ChannelReconstruction, SpatialReconstruction

    torch.manual_seed(0)
    sru, cru = SpatialReconstruction(8), ChannelReconstruction(8)
    for parameter in list(sru.parameters()) + list(cru.parameters()):
        parameter.data.normal_(0.0, 0.5)
    x = torch.randn(2, 8, 3, 10, 10)
    gamma = sru.norm.weight / sru.norm.weight.abs().sum()
    w = torch.sigmoid(sru.norm(x) * gamma.view(1, -1, 1, 1, 1))
    informative = torch.where(w > 0.5, torch.ones_like(w), w) * x
    redundant = torch.where(w > 0.5, torch.zeros_like(w), w) * x
    expected = torch.cat([informative[:, :4] + redundant[:, 4:], informative[:, 4:] + redundant[:, :4]], dim=1)
    assert torch.allclose(sru(x), expected, atol=1e-6)
    up, low = cru.squeeze_up(x[:, :4]), cru.squeeze_low(x[:, 4:])
    both = torch.cat([cru.group_conv(up) + cru.point_up(up), cru.point_low(low), low], dim=1)
    first, second = (both * torch.softmax(both.mean(dim=(2, 3, 4), keepdim=True), dim=1)).chunk(2, dim=1)
    assert torch.allclose(cru(x), first + second, atol=1e-6)
    # the generator runs CT and mirror one after the other: the same as one batch of both
    generator = SelfPromptGenerator((8, 8, 8, 8))
    ct, mirror = torch.randn(2, 1, 3, 32, 32), torch.randn(2, 1, 3, 32, 32)
    batched = generator.features(torch.cat([ct, mirror]))
    _, differences = generator(ct, mirror)
    assert all(torch.allclose(d, f[:2] - f[2:], atol=1e-5) for d, f in zip(differences, batched))


def test_self_prompt_reconstruction_units_train_like_their_definitions():
    """The units' in-place steps leave training as it was: the gradients of the input and of every
    weight equal those of the paper's out-of-place formulas (autograd would refuse, or differ, if an
    in-place step changed a tensor a backward formula keeps)."""
    from segkit.tasks.ais_ncct.prompts import ChannelReconstruction, SpatialReconstruction

    def sru_definition(sru, x):
        w = torch.sigmoid(sru.norm(x) * (sru.norm.weight / sru.norm.weight.abs().sum()).view(1, -1, 1, 1, 1))
        informative, redundant = torch.where(w > 0.5, torch.ones_like(w), w) * x, torch.where(w > 0.5, 0.0, w) * x
        return torch.cat([informative[:, :4] + redundant[:, 4:], informative[:, 4:] + redundant[:, :4]], dim=1)

    def cru_definition(cru, x):
        up, low = cru.squeeze_up(x[:, :4]), cru.squeeze_low(x[:, 4:])
        both = torch.cat([cru.group_conv(up) + cru.point_up(up), cru.point_low(low), low], dim=1)
        first, second = (both * torch.softmax(both.mean(dim=(2, 3, 4), keepdim=True), dim=1)).chunk(2, dim=1)
        return first + second

    torch.manual_seed(1)
    for unit, definition in ((SpatialReconstruction(8), sru_definition), (ChannelReconstruction(8), cru_definition)):
        for parameter in unit.parameters():
            parameter.data.normal_(0.0, 0.5)
        x, upstream = torch.randn(2, 8, 3, 10, 10), torch.randn(2, 8, 3, 10, 10)
        grads = []
        for forward in (unit, lambda x, unit=unit, definition=definition: definition(unit, x)):
            unit.zero_grad()
            leaf = (x * 1.0).requires_grad_()
            (forward(torch.relu(leaf)) * upstream).sum().backward()  # fed by an op, as in the stage
            grads.append([leaf.grad.clone()] + [p.grad.clone() for p in unit.parameters()])
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))
        assert any(g.abs().sum() > 0 for g in grads[0][1:])


def test_tap_projection_and_decoder_shapes():
    assert TapProjection(768, 32, source=16, target=2)(torch.randn(1, 768, 2, 2, 2)).shape == (1, 32, 2, 16, 16)
    assert TapProjection(160, 128, source=4, target=16)(torch.randn(1, 160, 2, 16, 16)).shape == (1, 128, 2, 4, 4)
    decoder = UnetrDecoder([(160, 4), (160, 4), (320, 4), (256, 4)], (8, 16, 32, 64), in_channels=3, feature_size=4)
    taps = [torch.randn(1, c, 2, 16, 16) for c in (160, 160, 320, 256)]
    prompts = [torch.randn(1, c, 2, 64 // s, 64 // s) for c, s in ((8, 2), (16, 4), (32, 8), (64, 16))]
    assert decoder(torch.randn(1, 3, 2, 64, 64), taps, prompts).shape == (1, 2, 2, 64, 64)


@pytest.mark.slow
def test_tinyvit_backbone_frozen_with_adapters_in_every_block():
    from segkit.tasks.ais_ncct.backbone import TinyViTBackbone, build_backbone

    backbone = build_backbone("litemedsam", pretrained=False)
    assert isinstance(backbone, TinyViTBackbone) and len(backbone.blocks) == 10
    assert not any(p.requires_grad for p in backbone.encoder.parameters() if not _is_adapter(p, backbone))
    assert all(isinstance(b.block.attn.qkv, LoRAQKV) for b in backbone.blocks)
    assert _trainable(backbone) == sum(_trainable(b.mlp_adapter) + _trainable(b.depth_adapter) +
                                       _trainable(b.block.attn.qkv) for b in backbone.blocks)
    backbone.train()
    assert not backbone.encoder.training  # frozen batch norms
    out = backbone(torch.randn(2 * 2, 3, 32, 32), depth=2)
    assert [tuple(o.shape) for o in out] == [(4, 160, 8, 8), (4, 160, 8, 8), (4, 320, 8, 8), (4, 256, 8, 8)]
    with pytest.raises(ValueError, match="divisible by 32"):
        backbone(torch.randn(2, 3, 48, 48), depth=2)


@pytest.mark.slow
def test_tinyvit_stem_in_slice_groups_gives_the_whole_window_result(monkeypatch):
    """The patch embedding and conv stage run a few slices at a time (memory): nothing there may mix
    slices, so any grouping gives the same features."""
    from segkit.tasks.ais_ncct import backbone as module

    backbone = module.build_backbone("litemedsam", pretrained=False).eval()
    slices = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        monkeypatch.setattr(module, "STEM_SLICES", 100)
        whole = backbone(slices, depth=6)
        monkeypatch.setattr(module, "STEM_SLICES", 4)
        grouped = backbone(slices, depth=6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(whole, grouped))


def test_adapted_blocks_in_slice_groups_give_the_whole_window_result(monkeypatch):
    """In inference each frozen block and its MLP adapter run a few slices at a time (a 20-slice window
    held 1.9 GiB there); only the depth adapter mixes slices, and it still sees the whole window.
    The adapters are given weights first (they start at zero), so a slice-mixing bug would show."""
    from segkit.tasks.ais_ncct import adapters
    from segkit.tasks.ais_ncct import backbone as module

    torch.manual_seed(3)
    backbone = module.build_backbone("litemedsam", pretrained=False).eval()
    for block in backbone.blocks:
        for parameter in (*block.mlp_adapter.parameters(), *block.depth_adapter.parameters()):
            torch.nn.init.normal_(parameter, std=0.05)
    slices = torch.randn(10, 3, 32, 32)
    with torch.no_grad():
        monkeypatch.setattr(adapters, "INFERENCE_SLICES", 100)
        whole = backbone(slices, depth=5)
        monkeypatch.setattr(adapters, "INFERENCE_SLICES", 3)
        grouped = backbone(slices, depth=5)
        fewer = backbone(slices[:4], depth=4)  # the first volume without its fifth slice
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(whole, grouped))
    assert not all(torch.allclose(a[:4], b, atol=1e-5) for a, b in zip(whole, fewer))  # the depth adapter mixes


def _is_adapter(parameter, backbone) -> bool:
    adapter_ids = {id(p) for b in backbone.blocks for m in (b.mlp_adapter, b.depth_adapter, b.block.attn.qkv.lora_q,
                                                           b.block.attn.qkv.lora_v) for p in m.parameters()}
    return id(parameter) in adapter_ids


@pytest.mark.slow
def test_sam_vit_b_backbone_resizes_position_embeddings():
    from segkit.tasks.ais_ncct.backbone import SamViTBackbone, build_backbone

    backbone = build_backbone("sam_vit_b", pretrained=False)
    assert isinstance(backbone, SamViTBackbone) and len(backbone.blocks) == 12
    per_block = _trainable(backbone.blocks[0])
    assert per_block == 2 * (768 * 4 * 2 + 769) + (768 * 64 * 2 + 64 + 768 + 769) + _trainable(backbone.blocks[0].depth_adapter)
    out = backbone(torch.randn(2, 3, 64, 64), depth=2)  # 4x4 tokens, the 64x64 embedding resized
    assert [tuple(o.shape) for o in out] == [(2, 768, 4, 4)] * 3 + [(2, 256, 4, 4)]


@pytest.mark.slow
def test_network_two_classes_mirror_matters_and_only_additions_train():
    from segkit.tasks.ais_ncct.network import build_network

    results = {}
    for mirror in (True, False):
        config = NetworkConfig(slice_size=32, depth=2, mirror=mirror, prompt_channels=(8, 16, 32, 64), feature_size=4)
        torch.manual_seed(0)
        net = build_network(config, pretrained=False)
        assert isinstance(net, AisctSam) and (net.prompts is not None) == mirror
        volume = torch.randn(1, 2, 2, 32, 32)
        out = net(volume)
        assert out.shape == (1, 2, 2, 32, 32)
        out.square().mean().backward()
        frozen = [p for n, p in net.named_parameters() if not p.requires_grad]
        assert frozen and all(p.grad is None for p in frozen)
        assert all(p.grad is not None for p in net.decoder.parameters())
        other = volume.clone()
        other[:, 1] += 1.0  # a different mirror channel
        with torch.no_grad():
            results[mirror] = (net(other) - net(volume)).abs().max().item()
        assert set(net.trainable_state()) == {n for n, p in net.named_parameters() if p.requires_grad}
        assert count_trainable(net) < sum(p.numel() for p in net.parameters())
    assert results[True] > 0 and results[False] == 0  # the ablation ignores channel 1
