"""Refit the cause head of a trained network on whole slices, its score left bit for bit.

Training names faults on 128-pixel crops, in batches where the cause is one loss among six; the
engine names them on whole slices. Model 8 called the simulator's CT motion "streaks" (20 of
56) or "none", and compressed pictures streaks or PET low counts (benchmarks/RESULTS.md). The
head is one linear layer on the features pooled with the attention weights
(``MSIQANet.cause_features``), so it can be fitted again, exactly, on the network's own features
of whole slices: a class-weighted multinomial logistic regression, with the rest of the network
frozen. Scores, attention maps and every figure that depends on them do not change.

The examples come from the recipe's own training sources only (never the benchmarks' held-out
patients): layer and picture faults on its simulated patients, the simulator's scanner-made
faults on its bank patients, and its real clinical volumes shown clean. Faults the network's
score does not see (``UNSEEN``) are left out: fitted, the head named 28-30 of the sample study's
50 clean slices "misregistration", since to this network a misregistered slice looks clean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..causes import CAUSES
from ..errors import InputError
from ..models.msiqa_net import MSIQANet
from .labels import NAMED_FROM
from .named_faults import causes_for, fault_picture
from .phantom_bank import MODES, clinical_slices, random_pet_voxel_mm, render_layers, simulate_slices
from .physical_faults import SHOWN_IN, build_bank
from .train import TrainConfig

# Misregistration and PET breathing: no network so far scores them below clean slices.
UNSEEN = ("misregistration", "pet_respiratory_motion")


@dataclass
class RefitConfig:
    trials_per_patient: int = 75  # faulted or clean whole slices of each simulated training patient
    local: float = 0.3  # share of layer and picture faults confined to one square region
    region_px: int = 160
    physical_noise_seeds: list[int] = field(default_factory=lambda: [7, 8])
    physical_slices: int = 3  # per bank patient and family
    clinical_every: int = 4  # every n-th slice of the recipe's clinical volumes, as "none"
    l2: float = 1e-3  # on the standardised features
    none_weight: float = 1.0  # all "none" examples together weigh this many times all faults together
    seed: int = 1234


@dataclass
class Examples:
    features: np.ndarray  # [N, F] float32
    causes: np.ndarray  # [N] index into CAUSES
    sources: list[str]  # what each example is, for the log


@torch.inference_mode()
def _features(net: MSIQANet, pictures: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.require(pictures, np.uint8, ["C", "W"])).permute(0, 3, 1, 2).float().div_(255.0)
    return net.cause_features(x.contiguous(memory_format=torch.channels_last)).numpy()


def examples(net: MSIQANet, recipe: TrainConfig, config: RefitConfig, clinical_root: str | Path | None,
             log: Callable[[str], None] = print) -> Examples:
    volumes = recipe.clinical_volumes if recipe.clinical_scenes else []
    if volumes and clinical_root is None:
        raise InputError("cause refit: the recipe shows real clinical volumes as clean; give --clinical-root, the folder "
                         f"they are relative to ({', '.join(p for v in volumes for p in v.values())}).")
    rng = np.random.default_rng(config.seed)
    feats: list[np.ndarray] = []
    causes: list[int] = []
    sources: list[str] = []

    def add(pictures: np.ndarray, names: list[str], source: str) -> None:
        feats.append(_features(net, pictures))
        causes.extend(CAUSES.index(n) for n in names)
        sources.extend([source] * len(names))

    for anatomy in recipe.phantom_anatomies:
        for noise in recipe.phantom_noise_seeds:
            slices = simulate_slices(noise, anatomy)
            for t in range(config.trials_per_patient):
                src = slices[int(rng.integers(len(slices)))]
                mode = MODES[t % len(MODES)]
                layers = src.layers(mode, pet_voxel_mm=random_pet_voxel_mm(rng) if mode == "pet" else None)
                options = [c for c in causes_for(layers) if c not in UNSEEN]
                cause = "none" if rng.random() < 1.0 / (len(options) + 1) else str(rng.choice(options))
                if cause == "none":
                    add(render_layers(layers)[None], ["none"], "simulated clean")
                    continue
                region = _region(layers, rng, config) if rng.random() < config.local else None
                picture, named = fault_picture(layers, cause, float(rng.uniform(0.5, 1.0)), rng, region)
                add(picture[None], [named], f"simulated {cause}")
            log(f"cause refit: simulated patient {anatomy} noise {noise}: {len(causes)} examples")
    for noise in config.physical_noise_seeds:
        families = [f for f in SHOWN_IN if f not in UNSEEN]
        for g in build_bank(recipe.physical_anatomies, noise, config.physical_slices, seed=config.seed, families=families):
            for mode in SHOWN_IN[g.family]:
                voxel = random_pet_voxel_mm(rng) if mode == "pet" else None
                versions = [(g.clean, "none")] + [(f.slice, f.cause if f.drop >= NAMED_FROM else "none") for f in g.faulted]
                add(np.stack([render_layers(v.layers(mode, voxel)) for v, _ in versions]), [n for _, n in versions],
                    f"scanner-made {g.family}")
        log(f"cause refit: scanner-made faults, noise {noise}: {len(causes)} examples")
    for volume in volumes:
        for s in clinical_slices(**{role: Path(clinical_root) / rel for role, rel in volume.items()},
                                 every=config.clinical_every):
            add(np.stack([render_layers(s.layers(m)) for m in s.modes]), ["none"] * len(s.modes), "clinical clean")
        log(f"cause refit: clinical {', '.join(volume.values())}: {len(causes)} examples")
    return Examples(np.concatenate(feats).astype(np.float32), np.array(causes), sources)


def _region(layers, rng: np.random.Generator, config: RefitConfig) -> tuple[slice, slice] | None:
    """A square inside the body (as the benchmarks place local faults), or None for the whole slice."""
    picture = render_layers(layers)
    h, w = picture.shape[:2]
    px = min(config.region_px, h, w)
    body = picture.max(-1) > 12
    for _ in range(50):
        y, x = int(rng.integers(0, h - px + 1)), int(rng.integers(0, w - px + 1))
        if body[y : y + px, x : x + px].mean() > 0.8:
            return slice(y, y + px), slice(x, x + px)
    return None


def fit_head(features: np.ndarray, causes: np.ndarray, n_causes: int, l2: float, none_weight: float,
             none: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a linear cause head: multinomial logistic regression (L-BFGS) with L2 on
    standardised features. Every fault cause weighs alike, whatever its number of examples, and
    all "none" examples together ``none_weight`` times all faults together. A cause without
    examples is pushed below the others by every example, so it is never named."""
    x = torch.from_numpy(features).double()
    y = torch.from_numpy(causes).long()
    counts = torch.bincount(y, minlength=n_causes).double()
    if counts[none] == 0 or (counts > 0).sum() < 2:
        raise InputError("cause refit: the examples need clean slices and at least one fault.")
    weight = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    weight[none] *= none_weight * ((counts > 0).sum() - 1)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
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
        weight_out = w / sd
        bias_out = b - (w * mu / sd).sum(1)
    return weight_out.float(), bias_out.float()


def refit_causes(net: MSIQANet, recipe: TrainConfig, config: RefitConfig = RefitConfig(),
                 clinical_root: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Fit ``net``'s cause head again (in place); returns what the card records of it."""
    if net.cause is None:
        raise InputError("this network has no cause head to refit; train one with a recipe whose cause_weight is > 0.")
    net.eval()
    ex = examples(net, recipe, config, clinical_root, log)
    names = net.config.causes
    index = np.array([names.index(CAUSES[c]) for c in ex.causes])
    weight, bias = fit_head(ex.features, index, len(names), config.l2, config.none_weight, names.index("none"))
    net.cause.weight.data.copy_(weight)
    net.cause.bias.data.copy_(bias)
    fitted = (torch.from_numpy(ex.features) @ weight.T + bias).argmax(1).numpy()
    counts = {names[i]: int((index == i).sum()) for i in range(len(names)) if (index == i).any()}
    log(f"cause refit: {len(index)} examples {counts}; named right on them {float((fitted == index).mean()):.3f}")
    return {**asdict(config), "unseen_left_out": list(UNSEEN), "examples": counts}
