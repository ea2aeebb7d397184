"""MSIQANet: shapes, gradient flow through both branches, and what the grid head changes."""

import pytest
import torch

from msiqa.models import AGCA, GRID_STRIDE, create_model, preset


@pytest.mark.parametrize("name", ["compact", "paper"])
def test_shapes_for_crops_and_slices(name):
    torch.manual_seed(0)
    net = create_model(name).eval()
    with torch.inference_mode():
        for h, w in ((64, 64), (96, 160)):
            score, weight = net(torch.rand(2, 3, h, w))
            assert score.shape == (2,)
            assert weight.shape == (2, 1, h // GRID_STRIDE, w // GRID_STRIDE)
            assert torch.all((weight > 0) & (weight < 1))


def _grads(net, x):
    net.train()
    score, _ = net(x)
    score.sum().backward()
    return {n: p.grad for n, p in net.named_parameters()}


def _norm(grads, prefix):
    return sum(float(g.abs().sum()) for n, g in grads.items() if n.startswith(prefix) and g is not None)


def test_gradients_reach_both_backbones_and_every_fusion_stage():
    torch.manual_seed(0)
    grads = _grads(create_model("compact"), torch.rand(2, 3, 64, 64))
    assert _norm(grads, "cnn.") > 0
    assert _norm(grads, "swin.") > 0
    for stage in range(4):
        assert _norm(grads, f"fuse.{stage}.") > 0
    assert _norm(grads, "weight.") > 0, "the weight branch must shape the score"


def test_released_head_cancels_its_weights():
    """Pooling before the head makes score = s*w/w = s: the weight branch gets no gradient."""
    torch.manual_seed(0)
    grads = _grads(create_model("compact", head="pooled"), torch.rand(2, 3, 64, 64))
    assert _norm(grads, "weight.") == pytest.approx(0.0, abs=1e-8)
    assert _norm(grads, "score.") > 0


def test_weight_map_varies_across_the_grid(bundled_model):
    x = torch.zeros(1, 3, 256, 256)
    x[..., 64:192, 64:192] = torch.rand(1, 3, 128, 128)  # a textured square in black air
    with torch.inference_mode():
        _, w = bundled_model.net(x)
    assert float(w.max() - w.min()) > 0.05


def test_ablation_presets_build_the_branches_they_name():
    assert create_model("compact", branches="cnn").swin is None
    assert create_model("compact", branches="swin").cnn is None
    assert isinstance(create_model("compact").attention, AGCA)
    assert not isinstance(create_model("compact", agca=False).attention, AGCA)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_agca_starts_as_channel_gating():
    torch.manual_seed(0)
    m = AGCA(32)
    x = torch.rand(2, 32, 4, 4)
    y = m(x)
    gate = y / x
    # One gate per channel and sample, constant over space, in (0, 1).
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert torch.all((gate > 0) & (gate < 1))
