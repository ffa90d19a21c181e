"""SC2S-Net modules: output shapes at the paper's sizes and reduced ones, and gradients reaching every
trainable parameter (so nothing is silently frozen or disconnected)."""

import pytest

torch = pytest.importorskip("torch")

from segkit.tasks.cc_fodf import network as nw  # noqa: E402

SMALL = nw.NetworkConfig(slice_size=32, width=0.125, sam_grid=14)


def _assert_all_grads(module: torch.nn.Module) -> None:
    missing = [name for name, p in module.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in module.parameters())


def test_fibre_peak_adaption_maps_144_slices_to_the_64_grid_of_160_channels():
    module = nw.FibrePeakAdaption(9, grid=64)
    x = torch.randn(1, 9, 144, 144, requires_grad=True)
    out = module(x)
    assert out.shape == (1, 160, 64, 64)
    assert (out >= 0).all()  # ends with a ReLU
    out.sum().backward()
    _assert_all_grads(module)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fibre_peak_adaption_reduced_grid():
    assert nw.FibrePeakAdaption(9, grid=14)(torch.randn(2, 9, 32, 32)).shape == (2, 160, 14, 14)


def test_sam_branch_shapes_and_gradients():
    module = nw.SamBranch(grid=14)
    x = torch.randn(2, 160, 14, 14, requires_grad=True)
    out = module(x)
    assert out.shape == (2, 256, 14, 14)
    out.square().mean().backward()
    _assert_all_grads(module)
    with pytest.raises(ValueError, match="14x14"):
        module(torch.randn(1, 160, 16, 16))


def test_sam_branch_runs_on_the_paper_grid_with_padded_windows():
    module = nw.SamBranch(grid=64).eval()
    with torch.no_grad():
        assert module(torch.randn(1, 160, 64, 64)).shape == (1, 256, 64, 64)


def test_sam_branch_is_initialised_from_the_litemedsam_encoder():
    weights = nw.litemedsam_weights_path()
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    module = nw.SamBranch(grid=14)
    merging_before = module.patch_merging.expand[0].weight.detach().clone()
    summary = module.load_litemedsam(weights)
    assert summary["tensors_copied"] > 50
    pairs = {
        "stage3_blocks.0.attn.qkv.weight": "image_encoder.layers.2.blocks.4.attn.qkv.weight",
        "stage3_blocks.1.mlp.fc2.bias": "image_encoder.layers.2.blocks.5.mlp.fc2.bias",
        "stage4_blocks.0.attn.attention_biases": "image_encoder.layers.3.blocks.0.attn.attention_biases",
        "stage4_blocks.1.local_conv.c.weight": "image_encoder.layers.3.blocks.1.local_conv.c.weight",
        "neck.2.weight": "image_encoder.neck.2.weight",
    }
    own = module.state_dict()
    for mine, theirs in pairs.items():
        assert torch.equal(own[mine], state[theirs]), mine
    # the stride-1 patch merging stays randomly initialised, as METHODS says
    assert torch.equal(module.patch_merging.expand[0].weight, merging_before)
    assert all(p.requires_grad for p in module.parameters())


def test_cnn_branch_returns_skips_and_the_1536_channel_fusion_features():
    module = nw.CnnBranch(9)
    skips, features = module(torch.randn(1, 9, 144, 144))
    assert [tuple(s.shape[1:]) for s in skips] == [(64, 144, 144), (128, 72, 72), (256, 36, 36), (512, 18, 18)]
    assert features.shape == (1, 1536, 18, 18)


def test_cnn_branch_gradients_at_reduced_width():
    module = nw.CnnBranch(9, SMALL.filters)
    skips, features = module(torch.randn(2, 9, 32, 32))
    assert features.shape == (2, SMALL.filters[4] + SMALL.filters[3], 4, 4)
    (features.mean() + sum(s.mean() for s in skips)).backward()
    _assert_all_grads(module)


def test_hybrid_feature_fusion_paper_sizes():
    module = nw.HybridFeatureFusion(1536, 256, sam_pool=4)
    out = module(torch.randn(1, 256, 64, 64), torch.randn(1, 1536, 18, 18))
    assert out.shape == (1, 1792, 18, 18)


def test_hybrid_feature_fusion_gradients_reach_both_branches():
    module = nw.HybridFeatureFusion(48, 256, sam_pool=1)
    sam = torch.randn(2, 256, 14, 14, requires_grad=True)
    cnn = torch.randn(2, 48, 4, 4, requires_grad=True)
    out = module(sam, cnn)
    assert out.shape == (2, 48 + 256, 4, 4)
    out.square().mean().backward()
    _assert_all_grads(module)
    assert sam.grad.abs().sum() > 0 and cnn.grad.abs().sum() > 0


def test_cross_attention_softmax_over_tokens_gives_a_convex_mix_of_values():
    module = nw.CrossAttention(4, 3, 4)
    with torch.no_grad():
        module.to_value.weight.copy_(torch.eye(4)[:, :, None, None])
        value = torch.full((1, 4, 3, 3), 2.0)
        out = module(torch.randn(1, 4, 3, 3), torch.randn(1, 3, 3, 3), value)
    # every output token is a weighted average of identical value tokens
    assert torch.allclose(out, value, atol=1e-5)


def test_decoder_deep_supervision_sum_and_gradients():
    filters = SMALL.filters
    module = nw.Decoder(40, filters, n_classes=1)
    skips = [torch.randn(2, f, 32 // 2**i, 32 // 2**i) for i, f in enumerate(filters[:4])]
    out = module(torch.randn(2, 40, 4, 4), skips)
    assert out.shape == (2, 1, 32, 32)
    out.mean().backward()
    _assert_all_grads(module)


def test_decoder_output_is_the_sum_of_the_three_heads():
    filters = SMALL.filters
    module = nw.Decoder(40, filters).eval()
    skips = [torch.randn(1, f, 32 // 2**i, 32 // 2**i) for i, f in enumerate(filters[:4])]
    features = torch.randn(1, 40, 4, 4)
    with torch.no_grad():
        full = module(features, skips)
        module.head_quarter.weight.zero_()
        module.head_quarter.bias.zero_()
        module.head_half.weight.zero_()
        module.head_half.bias.zero_()
        only_final = module(features, skips)
    assert not torch.allclose(full, only_final)


@pytest.mark.parametrize("architecture", ["sc2snet", "unet"])
def test_full_networks_shapes_and_gradients(architecture):
    config = nw.NetworkConfig(architecture=architecture, slice_size=32, width=0.125, sam_grid=14)
    net = nw.build_network(config)
    out = net(torch.randn(3, 9, 32, 32))
    assert out.shape == (3, 1, 32, 32)
    torch.nn.functional.binary_cross_entropy_with_logits(out, torch.rand(3, 1, 32, 32).round()).backward()
    _assert_all_grads(net)
    assert hasattr(net, "sam") == (architecture == "sc2snet")


def test_network_refuses_the_wrong_slice_size():
    net = nw.build_network(SMALL)
    with pytest.raises(ValueError, match="32"):
        net(torch.randn(1, 9, 48, 48))


def test_config_round_trip_and_validation():
    assert nw.NetworkConfig.from_dict(SMALL.to_dict()) == SMALL
    assert nw.NetworkConfig().filters == (64, 128, 256, 512, 1024)
    with pytest.raises(ValueError):
        nw.NetworkConfig(slice_size=100)
    with pytest.raises(ValueError):
        nw.NetworkConfig(architecture="vit")
