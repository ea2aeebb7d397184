"""MSIQANet: shapes, gradient flow through both branches, and what the grid head changes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from msiqa.causes import CAUSES
from msiqa.models import AGCA, GRID_STRIDE, MSIQAEnsemble, create_model, for_inference, preset
from msiqa.models.msiqa_net import onto_scale


@pytest.mark.parametrize("name", ["compact", "paper"])
def test_shapes_for_crops_and_slices(name):
    torch.manual_seed(0)
    net = create_model(name).eval()
    with torch.inference_mode():
        for h, w in ((64, 64), (96, 160)):
            out = net(torch.rand(2, 3, h, w))
            assert out.score.shape == (2,)
            assert out.weight.shape == (2, 1, h // GRID_STRIDE, w // GRID_STRIDE)
            assert out.cell_score.shape == out.weight.shape
            assert out.cause.shape == (2, len(CAUSES))
            assert torch.all((out.weight > 0) & (out.weight < 1))


def _grads(net, x):
    net.train()
    net(x).score.sum().backward()
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
    # Zero up to float32 rounding of s*w/w: a millionth of what reaches the score branch.
    assert _norm(grads, "score.") > 0
    assert _norm(grads, "weight.") < 1e-6 * _norm(grads, "score.")


def test_weight_map_varies_across_the_grid(bundled_model):
    x = torch.zeros(1, 3, 256, 256)
    x[..., 64:192, 64:192] = torch.rand(1, 3, 128, 128)  # a textured square in black air
    with torch.inference_mode():
        w = bundled_model.net(x).weight
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


def test_scores_stay_on_the_0_to_4_scale_in_order_and_unchanged_inside_it():
    raw = torch.linspace(-50, 50, 20001)
    mapped = onto_scale(raw)
    assert float(mapped.min()) >= 0.0 and float(mapped.max()) <= 4.0
    step = mapped.diff()
    assert torch.all(step >= 0), "order must be kept"
    assert torch.all(step[(raw[1:] > -2) & (raw[1:] < 6)] > 0), "ties only far outside the scale"
    inside = (raw >= 0.5) & (raw <= 3.5)
    assert torch.equal(mapped[inside], raw[inside])
    # Value and slope are continuous at the knees: no jump a user could see between neighbours.
    for knee in (0.5, 3.5):
        x = torch.tensor([knee - 1e-3, knee + 1e-3], dtype=torch.float64)
        assert float(onto_scale(x).diff()) == pytest.approx(2e-3, rel=1e-3)


def test_cause_head_reads_the_attention_pooled_features():
    """Without a cause list there is no cause head; with one, its gradient reaches the weights."""
    assert create_model("compact", causes=()).cause is None
    torch.manual_seed(0)
    net = create_model("compact").train()
    net(torch.rand(2, 3, 64, 64)).cause.sum().backward()
    assert net.weight[0].weight.grad.abs().sum() > 0


def test_score_and_cause_are_divided_by_one_sum_of_the_weights():
    """The bundled network was trained with the score and the cause head's input divided by one sum
    of the weight map. Two sums give the same values but other gradient rounding, and from there the
    bundled training command writes another network: the gradients must match that graph bit for bit."""
    torch.manual_seed(0)
    net = create_model("compact", branches="cnn").train()
    x, target = torch.rand(4, 3, 128, 128), torch.tensor([0.5, 1.5, 2.5, 3.5])

    def grads(forward):
        net.zero_grad()
        torch.manual_seed(1)  # the same dropout draws in both passes
        score, cause = forward()
        ((score - target).square().sum() + F.cross_entropy(cause, torch.arange(4))).backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    def one_sum():
        f = net.fused(x)
        s, w = net.score(f), net.weight(f)
        total = w.sum(dim=(1, 2, 3)).clamp_min(1e-6)
        return onto_scale((s * w).sum(dim=(1, 2, 3)) / total), net.cause((f * w).sum(dim=(2, 3)) / total[:, None])

    def network():
        out = net(x)
        return out.score, out.cause

    expected, got = grads(one_sum), grads(network)
    assert expected.keys() == got.keys()
    assert [n for n in expected if not torch.equal(expected[n], got[n])] == []


def test_neighbour_contrast_marks_a_cell_that_stands_out_and_not_a_smooth_ramp():
    from msiqa.models.msiqa_net import NeighbourContrast

    ramp = torch.arange(7.0).view(1, 1, 1, 7).expand(1, 1, 7, 7).clone()  # rises one per column
    out = NeighbourContrast(3)(ramp)
    assert out.shape == (1, 2, 7, 7) and torch.equal(out[:, :1], ramp)
    assert out[0, 1, 1:-1, 1:-1].abs().max() < 1e-6  # inside a linear ramp each cell is its neighbours' mean
    bump = ramp.clone()
    bump[0, 0, 3, 3] += 9.0
    contrast = NeighbourContrast(3)(bump)[0, 1]
    assert torch.isclose(contrast[3, 3], torch.tensor(8.0))  # 9 less its share of the 3x3 mean
    assert int(contrast.argmax()) == 3 * 7 + 3
    for bad in (1, 4):
        with pytest.raises(ValueError, match="odd neighbourhood"):
            NeighbourContrast(bad)


def test_a_network_with_weight_context_scores_crops_and_lone_pet_sized_slices():
    net = create_model("compact", weight_context=5).eval()
    assert net.weight[0].in_channels == 2 * 4 * net.config.fusion_dim
    with torch.no_grad():
        for h, w in ((128, 128), (200, 200), (512, 512)):
            out = net(torch.rand(1, 3, h, w))
            assert out.weight.shape == (1, 1, h // 32, w // 32) and torch.isfinite(out.score).all()


def _batch_norms(net) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def _trained_statistics(net):
    """Batch norms whose statistics and affine parts are far from a new network's, as training leaves
    them: folded wrongly, they would change the output."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.3, 3.0), (m.weight, 0.5, 1.5),
                              (m.bias, -0.3, 0.3)):
                t.data.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))
    return net


def _same_outputs(a, b, tol):
    for field in ("score", "weight", "cell_score", "cause"):
        assert torch.allclose(getattr(a, field), getattr(b, field), atol=tol, rtol=tol), field


@pytest.mark.parametrize("name", ["compact", "paper"])
def test_the_inference_copy_folds_every_batch_norm_and_scores_as_the_network(name):
    torch.manual_seed(0)
    net = _trained_statistics(create_model(name)).eval()
    before = _batch_norms(net)
    fast = for_inference(net)
    assert before > 0 and _batch_norms(fast) == 0
    assert _batch_norms(net) == before  # the network itself keeps them: training needs them
    x = torch.rand(2, 3, 96, 160)
    with torch.inference_mode():
        _same_outputs(fast(x), net(x), 1e-4)


def test_the_inference_copy_of_an_ensemble_folds_each_member(bundled_model):
    net = bundled_model.net.eval()
    assert isinstance(net, MSIQAEnsemble)
    fast = for_inference(net)
    assert _batch_norms(fast) == 0 and _batch_norms(net) == 19 * len(net.members)
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        _same_outputs(fast(x), net(x), 1e-4)
