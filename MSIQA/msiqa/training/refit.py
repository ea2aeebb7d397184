"""Fit a trained network's heads again on whole slices, its feature extractor frozen.

Training sees 128-pixel crops; the engine scores, names and points on whole slices. The frozen
network's fused feature grid is computed once per slice; the heads are fitted on it:

- with ``weight_head`` (first, since the other two read features pooled with its map): the weight
  head's two 1x1 convolutions, so that the map's highest cell lies inside local faults
  (``refit_slices.local_faults``) while every other slice's map is held. Training that moved the
  map moved the features the score is made of and cost ranking; this moves only the head that
  reads them (benchmarks/RESULTS.md, "Model 8w"). Without it the maps are not touched. With
  ``RefitConfig.weight_context`` the head first gets a second input, each cell's difference from
  its neighbourhood (``give_weight_context``), which the fit then weighs.
- the cause head: a class-weighted multinomial logistic regression on the recipe's own training
  slices (``refit_slices``). Model 8's head, trained on crops, called the simulator's CT motion
  "streaks" and compressed pictures streaks or PET low counts.
- given labelled pictures, the score head's last 1x1 convolution: a slice's score is that layer
  applied to its hidden cells pooled with the map (``MSIQANet.pooled_features``), so it is a ridge
  regression of the labelled pictures' scores (the radiologists' MOS) on those, while every training
  slice of the other sources is held at the score the trained network gives it (a slice's flag on
  a simulated or real study should not move because the development pictures were refitted), the
  ridge pulling towards the trained layer and picked by leaving one labelled scene out at a time.
  Fitted on the development pictures alone, the layer ranked held-out scenes better still but
  flagged none of the sample study's CT low dose, metal or CT motion. With
  ``RefitConfig.score_clinical_floor`` real clean slices are held no lower than that score instead:
  the one place where the fit may move a flag, and only off a study of diagnostic quality. With
  ``RefitConfig.score_hidden`` the whole score head is then fitted on the same objective, cell by
  cell (``fit_score_head``): a nonlinear fit, where the layer alone is a linear one. Its ridge is the
  layer's unless ``RefitConfig.score_hidden_ridges`` names candidates, picked by leaving groups of
  labelled scenes out (``pick_head_ridge``), the layer alone among them.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from ..assess import network_input
from ..errors import InputError
from ..models import GRID_STRIDE, MSIQAEnsemble, members_of
from ..models.msiqa_net import MSIQANet, NeighbourContrast
from .refit_slices import CLINICAL_CLEAN, UNSEEN, Batch, RefitConfig, local_faults, training_slices
from .train import TrainConfig


@torch.inference_mode()
def _fused(net: MSIQANet, pictures: np.ndarray) -> torch.Tensor:
    """The frozen network's fused feature grid, [B, C, h, w]: what all three heads read."""
    # The engine's own preparation: a lone PET (200 or 285 pixels wide) is padded as when it is scored.
    return net.fused(network_input(pictures).contiguous(memory_format=torch.channels_last))


@torch.inference_mode()
def _pool(net: MSIQANet, f: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    fused, cells = net.pool(f)
    return fused.numpy(), cells.numpy()


def _pooled(net: MSIQANet, pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return _pool(net, _fused(net, pictures))


def give_weight_context(net: MSIQANet | MSIQAEnsemble, k: int) -> None:
    """Let the weight head of ``net`` (each member's) read each cell against its k x k neighbourhood
    (``NetConfig.weight_context``), in place. The new inputs start with zero weights, so the map is
    the trained one until the head is fitted again."""
    if k == net.config.weight_context:
        return
    if net.config.weight_context:
        raise InputError(f"this network's weight head already reads a {net.config.weight_context}-cell "
                         f"neighbourhood; a refit cannot change it to {k}.")
    contrast = NeighbourContrast(k)  # an invalid k stops here, before any member is changed
    for m in members_of(net):
        old = m.weight[0]
        wide = torch.nn.Conv2d(2 * old.in_channels, old.out_channels, 1)
        with torch.no_grad():
            wide.weight.zero_()
            wide.weight[:, : old.in_channels] = old.weight
            wide.bias.copy_(old.bias)
        m.weight[0] = wide
        m.weight_input = contrast
        m.config = replace(m.config, weight_context=k)
    net.config = replace(net.config, weight_context=k)


def _cells(f: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B * h * w, C] in double, one row per grid cell."""
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double()


def fit_weight_head(head: torch.nn.Sequential, faulted: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    held: Sequence[torch.Tensor], hold: float, ridge: float) -> dict:
    """Fit the weight head's two 1x1 convolutions (in place) so that each faulted grid's highest cell
    lies in its fault's cells: per grid, minus the log of the softmax mass of the logits inside them;
    plus ``hold`` times the mean squared change of every held grid's logits (each grid weighing
    alike), plus ``ridge`` times the squared distance to the trained head. ``faulted``: (fused grid
    [C, h, w], boolean cells [h, w]) pairs; ``held``: fused grids [C, h, w]."""
    conv1, conv2 = head[0], head[2]
    start = [conv1.weight.detach().double().flatten(1), conv1.bias.detach().double(),
             conv2.weight.detach().double().flatten(1), conv2.bias.detach().double()]
    params = [t.clone().requires_grad_(True) for t in start]

    def logits(x: torch.Tensor, p=params) -> torch.Tensor:
        return F.linear(F.gelu(F.linear(x, p[0], p[1])), p[2], p[3])[:, 0]

    # Faulted grids padded to one length, so one pass scores them all.
    n = max(m.numel() for _, m in faulted)
    xf = torch.zeros(len(faulted), n, faulted[0][0].shape[0], dtype=torch.float64)
    valid = torch.zeros(len(faulted), n, dtype=torch.bool)
    inside = torch.zeros(len(faulted), n, dtype=torch.bool)
    for i, (f, m) in enumerate(faulted):
        xf[i, : m.numel()] = _cells(f[None])
        valid[i, : m.numel()] = True
        inside[i, : m.numel()] = m.flatten()
    xh = torch.cat([_cells(f[None]) for f in held])
    wh = torch.cat([torch.full((f.shape[1] * f.shape[2],), 1.0 / (f.shape[1] * f.shape[2] * len(held)),
                               dtype=torch.float64) for f in held])
    with torch.no_grad():
        zh0 = logits(xh, start)

    def faulted_logits(p) -> torch.Tensor:  # [grids, n], -inf on padding
        return logits(xf.flatten(0, 1), p).view(len(faulted), n).masked_fill(~valid, -torch.inf)

    def pointing_loss(p) -> torch.Tensor:
        lp = torch.log_softmax(faulted_logits(p), 1)
        return -torch.logsumexp(lp.masked_fill(~inside, -torch.inf), 1).mean()

    def hits(p) -> float:
        return float(inside.gather(1, faulted_logits(p).argmax(1, keepdim=True)).double().mean())

    opt = torch.optim.LBFGS(params, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (pointing_loss(params) + hold * (wh * (logits(xh) - zh0) ** 2).sum()
                + ridge * sum(((p - q) ** 2).sum() for p, q in zip(params, start)))
        loss.backward()
        return loss

    with torch.no_grad():
        before = hits(start)
    opt.step(closure)
    with torch.no_grad():
        conv1.weight.copy_(params[0].view_as(conv1.weight).float())
        conv1.bias.copy_(params[1].float())
        conv2.weight.copy_(params[2].view_as(conv2.weight).float())
        conv2.bias.copy_(params[3].float())
        return {"local_faults": len(faulted), "held_grids": len(held), "peak_in_fault_before": before,
                "peak_in_fault_after": hits(params),
                "held_logits_moved_mean": float((wh * (logits(xh) - zh0).abs()).sum())}


def fit_cause_head(features: np.ndarray, causes: np.ndarray, n_causes: int, l2: float, none_weight: float,
                   none: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a linear cause head: multinomial logistic regression (L-BFGS) with L2 on
    standardised features. Every fault cause weighs alike, whatever its number of examples, and
    all "none" examples together ``none_weight`` times all faults together. A cause without
    examples is pushed below the others by every example, so it is never named."""
    x = torch.from_numpy(features).double()
    y = torch.from_numpy(causes).long()
    counts = torch.bincount(y, minlength=n_causes).double()
    if counts[none] == 0 or (counts > 0).sum() < 2:
        raise InputError("refit: the cause examples need clean slices and at least one fault.")
    weight = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    weight[none] *= none_weight * ((counts > 0).sum() - 1)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    # A feature that hardly varies over the examples (a channel the network all but never uses) is
    # left out: standardised, its rounding noise could be fitted, and the weight it ends with on the
    # network's own scale, w / sd, can pass what float16 holds (it did, on a seed-3 network).
    live = sd > 1e-2 * sd.median()
    xs = (x - mu) / sd * live
    w = torch.zeros(n_causes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_causes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (F.cross_entropy(xs @ w.T + b, y, reduction="none") * weight[y]).sum() / weight[y].sum()
        loss = loss + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (w / sd).float(), (b - (w * mu / sd).sum(1)).float()


def _slice_weights(kept: np.ndarray, held: int, anchor_weight: float) -> np.ndarray:
    """Kept labelled pictures 1 each (left-out ones 0), then ``held`` slices that together weigh
    ``anchor_weight`` times the kept pictures: holding them stays as strong whatever is left out."""
    return np.concatenate([kept.astype(np.float64), np.full(held, anchor_weight * kept.sum() / max(held, 1))])


def _need_two_scenes(scenes: Sequence[str], left_out: str) -> None:
    if len(set(scenes)) < 2:
        raise InputError(f"refit: the labelled pictures need at least two scenes (the ridge is picked by leaving "
                         f"{left_out} out).")


def fit_score_layer(cells: np.ndarray, mos: np.ndarray, held: np.ndarray, held_scores: np.ndarray, a0: np.ndarray,
                    ridge: float, anchor_weight: float) -> tuple[np.ndarray, float]:
    """min sum (cells a + b - mos)^2 + anchor_weight * n/m * sum (held a + b - held_scores)^2 + ridge |a - a0|^2:
    the n labelled pictures' pooled hidden cells regressed on their scores, the m held slices kept at
    theirs, the layer pulled towards the trained one (a0; the bias is free)."""
    n, m = len(cells), len(held)
    x = np.hstack([np.vstack([cells, held]), np.ones((n + m, 1))])
    t = np.concatenate([mos, held_scores])
    wt = _slice_weights(np.ones(n, dtype=bool), m, anchor_weight)
    reg = ridge * np.eye(x.shape[1])
    reg[-1, -1] = 0.0
    sol = np.linalg.solve(x.T @ (wt[:, None] * x) + reg, x.T @ (wt * t) + ridge * np.append(a0, 0.0))
    return sol[:-1], float(sol[-1])


def _score_cells(net: MSIQANet, grids: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused grids [B, C, h, w] -> every cell's features [N, C], its map weight [N] and its slice [N]."""
    cells, weights, slices, first = [], [], [], 0
    with torch.inference_mode():
        maps = [net.attention_map(f) for f in grids]
    for f, w in zip(grids, maps):
        cells.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
        weights.append(w.reshape(-1))
        slices.append(torch.arange(first, first + f.shape[0]).repeat_interleave(f.shape[2] * f.shape[3]))
        first += f.shape[0]
    return torch.cat(cells).clone(), torch.cat(weights).clone(), torch.cat(slices)


def _set_layer(lasts: Sequence[torch.nn.Module], a: np.ndarray, b: float) -> None:
    """The members' last score layers side by side take the joint layer ``a`` (in place); each its bias ``b``."""
    for last, block in zip(lasts, np.split(a, len(lasts))):
        last.weight.data.copy_(torch.from_numpy(block).float().view_as(last.weight))
        last.bias.data.fill_(b)


def _head_params(heads: Sequence[torch.nn.Sequential]) -> list[list[torch.Tensor]]:
    """Each head's two 1x1 convolutions as linear layers: [weight, bias, weight, bias], copies."""
    return [[p.detach().clone().flatten(1) if p.dim() > 1 else p.detach().clone() for p in
             (h[0].weight, h[0].bias, h[2].weight, h[2].bias)] for h in heads]


def _slice_scores(params: Sequence[Sequence[torch.Tensor]], cells: Sequence[tuple[torch.Tensor, ...]],
                  totals: Sequence[torch.Tensor]) -> torch.Tensor:
    """The members' mean slice score, sum(s * w) / sum(w) with s read cell by cell through each head."""
    out = torch.zeros(len(totals[0]), dtype=torch.float64)
    for (x, w, s), p, total in zip(cells, params, totals):
        cell = F.linear(F.gelu(F.linear(x, p[0], p[1])), p[2], p[3])[:, 0]
        out = out + torch.zeros_like(out).index_add_(0, s, (cell * w).double()) / total
    return out / len(cells)


def _map_totals(cells: Sequence[tuple[torch.Tensor, ...]], slices: int) -> list[torch.Tensor]:
    return [torch.zeros(slices, dtype=torch.float64).index_add_(0, s, w.double()) for _, w, s in cells]


def fit_score_head(heads: Sequence[torch.nn.Sequential], cells: Sequence[tuple[torch.Tensor, ...]],
                   targets: np.ndarray, slice_weights: np.ndarray, ridge: float, iterations: int = 100) -> dict:
    """Fit each member's whole score head (both 1x1 convolutions, in place) so that the members' mean
    slice score, sum(s * w) / sum(w) with s read cell by cell, meets ``targets`` in weighted least
    squares, plus ``ridge`` times the members' mean squared distance from the heads as given.
    ``cells``: per member, ``_score_cells`` of the same slices in the same order."""
    t = torch.from_numpy(targets).double()
    sw = torch.from_numpy(slice_weights).double()
    start = _head_params(heads)
    params = [[q.clone().requires_grad_(True) for q in member] for member in start]
    totals = _map_totals(cells, len(t))

    def distance(ps) -> torch.Tensor:
        return sum(((p - q) ** 2).sum() for member, first in zip(ps, start) for p, q in zip(member, first)) / len(ps)

    flat = [p for member in params for p in member]
    opt = torch.optim.LBFGS(flat, max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (sw * (_slice_scores(params, cells, totals) - t) ** 2).sum() + ridge * distance(params)
        loss.backward()
        return loss

    with torch.no_grad():
        before = _slice_scores(start, cells, totals)
    opt.step(closure)
    with torch.no_grad():
        after = _slice_scores(params, cells, totals)
        for h, p in zip(heads, params):
            for layer_param, fitted in zip((h[0].weight, h[0].bias, h[2].weight, h[2].bias), p):
                layer_param.copy_(fitted.view_as(layer_param))
        return {"slices": len(t), "cells": int(len(cells[0][0])), "ridge": ridge,
                "weighted_error_before": float((sw * (before - t) ** 2).sum() / sw.sum()),
                "weighted_error_after": float((sw * (after - t) ** 2).sum() / sw.sum()),
                "head_moved": float(distance(params))}


def pick_head_ridge(start: Callable[[np.ndarray], list[torch.nn.Sequential]],
                    cells: Sequence[tuple[torch.Tensor, ...]], targets: np.ndarray,
                    weights: Callable[[np.ndarray], np.ndarray], scenes: np.ndarray, ridges: Sequence[float],
                    groups: int = 3) -> tuple[float | None, dict[str, float]]:
    """The whole head's ridge whose fits, each made without one group of labelled scenes, rank that
    group's pictures best (SROCC over every labelled picture, each scored by the fit that did not see
    its scene); None, the layer alone, when no fit beats it. ``start(out)``: the heads, copies, with the
    last layer fitted without the labelled pictures in ``out``; ``weights(keep)``: the slice weights
    with only the kept labelled pictures counted. The first len(scenes) slices are the labelled ones.
    Groups, not single scenes: each fit costs a minute on the bundled pair."""
    _need_two_scenes(scenes, "some")
    names = sorted(set(scenes))
    n, totals = len(scenes), _map_totals(cells, len(targets))
    outs = [np.isin(scenes, names[g::groups]) for g in range(min(groups, len(names)))]
    found = {}
    for ridge in [None, *ridges]:
        pred = np.zeros(n)
        for out in outs:
            heads = start(out)
            if ridge is not None:
                fit_score_head(heads, cells, targets, weights(~out), ridge)
            with torch.no_grad():
                pred[out] = _slice_scores(_head_params(heads), cells, totals).numpy()[:n][out]
        found["layer" if ridge is None else str(float(ridge))] = float(spearmanr(pred, targets[:n]).correlation)
    best = max(found, key=found.get)
    return (None if best == "layer" else float(best)), found


def pick_ridge(cells: np.ndarray, mos: np.ndarray, scenes: np.ndarray, held: np.ndarray, held_scores: np.ndarray,
               a0: np.ndarray, ridges: Sequence[float], anchor_weight: float) -> tuple[float, dict[float, float]]:
    """The ridge whose layers, each fitted without one labelled scene, rank the left-out scenes best
    (SROCC over every labelled picture, each scored by the fit that did not see its scene)."""
    _need_two_scenes(scenes, "one")
    found = {}
    for ridge in ridges:
        pred = np.zeros(len(mos))
        for s in sorted(set(scenes)):
            out = scenes == s
            a, b = fit_score_layer(cells[~out], mos[~out], held, held_scores, a0, ridge, anchor_weight)
            pred[out] = cells[out] @ a + b
        found[float(ridge)] = float(spearmanr(pred, mos).correlation)
    return max(found, key=found.get), found


def _at_most_label(held_scores: np.ndarray, groups: Sequence[tuple[int, np.ndarray]]) -> np.ndarray:
    """Each group's faulted versions held no higher than the group's clean version (its first) less
    the label rule's drop; clean versions and every other slice stay where the network put them."""
    out = held_scores.copy()
    for start, drops in groups:
        span = slice(start, start + len(drops))
        out[span] = np.minimum(out[span], out[start] - drops)
    return out


def _fault_cells(region: tuple[slice, slice], h: int, w: int) -> torch.Tensor:
    """The grid cells whose centres lie in a pixel region: where the map's highest cell should be."""
    ys, xs = region
    cy, cx = (torch.arange(h) + 0.5) * GRID_STRIDE, (torch.arange(w) + 0.5) * GRID_STRIDE
    return ((cy >= ys.start) & (cy < ys.stop))[:, None] & ((cx >= xs.start) & (cx < xs.stop))[None, :]


def refit(net: MSIQANet | MSIQAEnsemble, samples: Sequence | None, recipe: TrainConfig,
          config: RefitConfig = RefitConfig(), clinical_root: str | Path | None = None,
          log: Callable[[str], None] = print, slices: Iterable[Batch] | None = None,
          weight_head: bool = False) -> dict:
    """Fit ``net``'s cause head again (in place) on whole slices; given labelled pictures (``samples``,
    ``datasets.Sample``), its score layer too; with ``weight_head``, first its weight head, so that the
    map points at local faults. Returns what the card records of it (for an ensemble, one weight-head
    record per member). ``slices``: ``training_slices(recipe, config, clinical_root)`` rendered once
    already, for fitting several networks (benchmarks/refit_cv.py).

    An ensemble's members each keep their own map (each weight head is fitted on its member's grids),
    but its cause logits and score are the members' means of layers linear in their pooled features:
    one linear model over all members' features, fitted once, each member's layer its block. The
    penalties weigh the members' mean, so an ensemble of copies of a network refits as that network."""
    members = members_of(net)
    if any(m.cause is None for m in members):
        raise InputError("this network has no cause head to refit; train one with a recipe whose cause_weight is > 0.")
    if samples is not None and not samples:
        raise InputError("refit: no labelled pictures were given for the score layer.")
    net.eval()
    k = len(members)
    grids, causes, groups, sources = [[] for _ in members], [], [], []
    for batch in training_slices(recipe, config, clinical_root, log) if slices is None else slices:
        for g, m in zip(grids, members):
            g.append(_fused(m, batch.pictures))
        if batch.drops is not None:
            groups.append((len(causes), np.asarray(batch.drops, dtype=np.float64)))
        causes.extend(batch.causes)
        sources.extend([batch.source] * len(batch.causes))
    labelled_grids = [[_fused(m, s.image[None]) for s in samples or []] for m in members]
    pooled = [[_pool(m, f) for f in g] for m, g in zip(members, grids)]
    lasts = [m.score[-1] for m in members]
    a0s = [last.weight.detach().double().numpy().ravel() for last in lasts]
    # What the trained network scores the training slices: the score layer holds them there.
    held_scores = np.mean([np.concatenate([p[1] for p in mp]).astype(np.float64) @ a0 + float(last.bias.detach())
                           for mp, a0, last in zip(pooled, a0s, lasts)], axis=0)
    if config.score_fault_drops:
        held_scores = _at_most_label(held_scores, groups)
    if config.score_clinical_floor is not None:
        clinical = np.array(sources) == CLINICAL_CLEAN
        held_scores = np.where(clinical, np.maximum(held_scores, config.score_clinical_floor), held_scores)
    fitted = {**asdict(config), "unseen_left_out": list(UNSEEN), "weight": None}
    if weight_head:
        give_weight_context(net, config.weight_context)
        faults = list(local_faults(recipe, config, samples))
        records = []
        for i, (m, g, lg) in enumerate(zip(members, grids, labelled_grids)):
            faulted = []
            for fault in faults:
                f = _fused(m, fault.picture[None])
                faulted.append((m.weight_input(f)[0], _fault_cells(fault.region, *f.shape[2:])))
            held = [f for batch in g for f in m.weight_input(batch)] + [m.weight_input(f)[0] for f in lg]
            records.append(fit_weight_head(m.weight, faulted, held, config.head_hold, config.head_ridge))
            log(f"refit: weight head{f' of member {i}' if k > 1 else ''} on {len(faulted)} local faults, held "
                f"{len(held)} slices: the map's peak in the fault {records[-1]['peak_in_fault_before']:.3f} -> "
                f"{records[-1]['peak_in_fault_after']:.3f}")
        fitted["weight"] = records[0] if k == 1 else records
        pooled = [[_pool(m, f) for f in g] for m, g in zip(members, grids)]  # read through the new maps
    # Each member's pooled features side by side: the joint layers' input.
    fused_x = np.hstack([np.concatenate([p[0] for p in mp]) for mp in pooled])
    names = net.config.causes
    index = np.array([names.index(c) for c in causes])
    weight, bias = fit_cause_head(fused_x, index, len(names), config.cause_l2 * k, config.cause_none_weight,
                                  names.index("none"))
    for m, w in zip(members, weight.chunk(k, dim=1)):
        m.cause.weight.data.copy_(w * k)
        m.cause.bias.data.copy_(bias)
    counts = {names[i]: int((index == i).sum()) for i in range(len(names)) if (index == i).any()}
    log(f"refit: cause head on {len(index)} slices {counts}")
    fitted.update({"cause_examples": counts, "score": None})
    if samples is None:
        return fitted
    # In units of the members' mean layer scaled by sqrt(k), the ridge is the mean over members of
    # each layer's squared distance from its trained one.
    root = np.sqrt(k)
    held_cells = np.hstack([np.concatenate([p[1] for p in mp]) for mp in pooled]).astype(np.float64) / root
    labelled = np.hstack([np.concatenate([_pool(m, f)[1] for f in lg]) for m, lg in zip(members, labelled_grids)])
    labelled = labelled.astype(np.float64) / root
    a0 = np.concatenate(a0s) / root
    mos = np.array([s.mos for s in samples], dtype=np.float64)
    scenes = np.array([s.scene for s in samples])
    ridge, found = pick_ridge(labelled, mos, scenes, held_cells, held_scores, a0, config.score_ridges,
                              config.score_anchor_weight)
    a, b = fit_score_layer(labelled, mos, held_cells, held_scores, a0, ridge, config.score_anchor_weight)
    _set_layer(lasts, a * root, b)
    moved = np.abs(held_cells @ a + b - held_scores)
    log(f"refit: score layer on {len(samples)} labelled pictures, ridge {ridge:g} (left-out scenes SROCC "
        f"{found[ridge]:.3f}), held slices moved {moved.mean():.3f} on average")
    fitted["score"] = {"labelled_pictures": len(samples), "scenes": len(set(scenes)), "ridge": ridge,
                       "left_out_scene_srocc": found, "held_slices": len(held_cells),
                       "held_slices_moved_mean": float(moved.mean()), "held_slices_moved_max": float(moved.max())}
    if config.score_hidden:
        # The layer's objective again, now over the whole head: labelled pictures first, then held slices.
        cells = [_score_cells(m, list(lg) + list(g)) for m, lg, g in zip(members, labelled_grids, grids)]
        targets = np.concatenate([mos, held_scores])
        heads = [m.score for m in members]

        def weights(keep: np.ndarray) -> np.ndarray:
            return _slice_weights(keep, len(held_scores), config.score_anchor_weight)

        def start(out: np.ndarray) -> list[torch.nn.Sequential]:
            a_, b_ = fit_score_layer(labelled[~out], mos[~out], held_cells, held_scores, a0, ridge,
                                     config.score_anchor_weight)
            copies = [copy.deepcopy(h) for h in heads]
            _set_layer([h[-1] for h in copies], a_ * root, b_)
            return copies

        hidden_ridge, found = ridge, None
        if config.score_hidden_ridges:
            hidden_ridge, found = pick_head_ridge(start, cells, targets, weights, scenes, config.score_hidden_ridges)
            log(f"refit: whole score head, left-out scene groups SROCC {found}: "
                f"{'the layer alone' if hidden_ridge is None else f'ridge {hidden_ridge:g}'}")
        record = {"ridge": None, "slices": len(targets)}
        if hidden_ridge is not None:
            record = fit_score_head(heads, cells, targets, weights(np.ones(len(mos), dtype=bool)), hidden_ridge)
            log(f"refit: whole score head on {record['slices']} slices ({record['cells']} cells), weighted squared "
                f"error {record['weighted_error_before']:.4f} -> {record['weighted_error_after']:.4f}")
        if found is not None:
            record["left_out_scene_groups_srocc"] = found
        fitted["score"]["hidden"] = record
    return fitted
