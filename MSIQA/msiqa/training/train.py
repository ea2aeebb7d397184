"""Training from scratch on native-resolution crops of real and synthetic images.

A batch holds several scenes and several versions of each, so that a ranking loss can
compare versions of the same anatomy (what within-scene SROCC measures) beside the
regression loss on the 0-4 scale. Every step draws its randomness from (seed, step), so a
run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..models import MSIQANet, create_model
from .datasets import Sample
from .degrade import FAMILIES, degrade
from .handcrafted import Calibration, features

# Families whose effect the hand-made features measure on the real grid: their synthetic
# labels come from the fitted calibration; the others drop by a fixed amount per strength.
CALIBRATED = {"jpeg8", "jpeg12", "impulse", "gaussian_noise", "speckle", "poisson_noise"}
UNCALIBRATED_DROP = 1.5


@dataclass
class TrainConfig:
    preset: str = "compact"
    overrides: dict[str, Any] = field(default_factory=dict)
    steps: int = 1500
    batch_scenes: int = 4
    per_scene: int = 6
    crop: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 50
    synthetic: float = 0.3  # fraction of crops replaced by a synthetic degradation
    local: float = 0.3  # of those, fraction degraded in one sub-square only
    labels: str = "calibrated"  # or "fixed": drop = UNCALIBRATED_DROP * strength for every family
    rank_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 250

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls(**json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _crop_origin(img: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """A random crop origin on the 8x8 JPEG block grid, mostly inside the body."""
    h, w = img.shape[:2]
    best = (0, 0, -1.0)
    for _ in range(6):
        y = int(rng.integers(0, (h - crop) // 8 + 1)) * 8
        x = int(rng.integers(0, (w - crop) // 8 + 1)) * 8
        body = float((img[y : y + crop : 4, x : x + crop : 4].max(-1) > 12).mean())
        if body > 0.6:
            return y, x
        if body > best[2]:
            best = (y, x, body)
    return best[0], best[1]


class BatchMaker:
    def __init__(self, samples: list[Sample], config: TrainConfig):
        self.samples, self.c = samples, config
        self.by_scene: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            self.by_scene.setdefault(s.scene, []).append(i)
        self.scenes = sorted(self.by_scene)
        self.calibration = None
        if config.synthetic > 0 and config.labels == "calibrated":
            feats = np.array([features(s.image) for s in samples])
            self.calibration = Calibration.fit(feats, np.array([s.mos for s in samples]))

    def _synthetic(self, crop: np.ndarray, mos: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        family = str(rng.choice(sorted(FAMILIES)))
        s = float(rng.uniform(0.15, 1.0))
        region = None
        if rng.random() < self.c.local:
            size = self.c.crop // 2
            y, x = (int(rng.integers(0, 2)) * size for _ in range(2))
            region = (slice(y, y + size), slice(x, x + size))
        out = degrade(crop, family, s, rng, region)
        if self.calibration is not None and family in CALIBRATED:
            # The change the calibration predicts, measured where the degradation is.
            area = region or (slice(None), slice(None))
            drop = min(0.0, float(self.calibration(features(out[area])) - self.calibration(features(crop[area]))))
        else:
            drop = -UNCALIBRATED_DROP * s
        return out, float(np.clip(mos + drop, 0.0, 4.0))

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.c.seed, step])
        scenes = rng.choice(len(self.scenes), size=min(self.c.batch_scenes, len(self.scenes)), replace=False)
        crops, labels, groups = [], [], []
        for g, si in enumerate(scenes):
            members = self.by_scene[self.scenes[si]]
            for i in rng.choice(members, size=self.c.per_scene, replace=len(members) < self.c.per_scene):
                s = self.samples[i]
                y, x = _crop_origin(s.image, self.c.crop, rng)
                crop = s.image[y : y + self.c.crop, x : x + self.c.crop]
                if rng.random() < 0.5:
                    crop = crop[:, ::-1]
                crop, mos = np.ascontiguousarray(crop), s.mos
                if rng.random() < self.c.synthetic:
                    crop, mos = self._synthetic(crop, mos, rng)
                crops.append(crop)
                labels.append(mos)
                groups.append(g)
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        return x, torch.tensor(labels, dtype=torch.float32), torch.tensor(groups)


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, groups: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Hinge on every same-scene pair whose labels differ by at least 0.2."""
    dp = pred[:, None] - pred[None, :]
    dt = target[:, None] - target[None, :]
    pairs = (groups[:, None] == groups[None, :]) & (dt >= 0.2)
    if not pairs.any():
        return pred.sum() * 0.0
    return F.relu(margin - dp[pairs]).mean()


def _lr(step: int, c: TrainConfig) -> float:
    if step < c.warmup:
        return c.lr * (step + 1) / c.warmup
    t = (step - c.warmup) / max(1, c.steps - c.warmup)
    return c.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _save_checkpoint(path: Path, net: MSIQANet, opt: torch.optim.Optimizer, step: int) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().clone().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step)})
    tmp.replace(path)


def _load_checkpoint(path: Path, net: MSIQANet, opt: torch.optim.Optimizer) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        step = int(f.metadata()["step"])
    t = load_file(str(path))
    net.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in t.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return step


def train(
    samples: list[Sample],
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> MSIQANet:
    """Train a network from scratch; with ``out_dir``, checkpoint there and resume from it."""
    torch.manual_seed(config.seed)
    net = create_model(config.preset, **config.overrides)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    start = 0
    ckpt = Path(out_dir) / "checkpoint.safetensors" if out_dir else None
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        (ckpt.parent / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
        if ckpt.exists():
            start = _load_checkpoint(ckpt, net, opt)
            log(f"resumed from {ckpt} at step {start}")
    make_batch = BatchMaker(samples, config)
    net.train()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    t0, running = time.time(), None
    for step in range(start, config.steps):
        torch.manual_seed(config.seed * 1_000_003 + step)
        x, y, g = make_batch(step)
        for group in opt.param_groups:
            group["lr"] = _lr(step, config)
        pred, _ = net(x)
        loss = F.smooth_l1_loss(pred, y) + config.rank_weight * ranking_loss(pred, y, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}")
        if ckpt is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            _save_checkpoint(ckpt, net, opt, step + 1)
    if bar is not None:
        bar.close()
    log(f"trained {config.steps - start} steps in {time.time() - t0:.0f} s")
    return net.eval()


@torch.inference_mode()
def predict(net: MSIQANet, images: list[np.ndarray], batch: int = 4) -> np.ndarray:
    """Whole-picture scores (as ``assess`` computes them) for a list of same-size pictures."""
    from ..assess import Scorer
    from ..weights import LoadedModel

    scorer = Scorer(LoadedModel(net.eval(), {}, Path()), device="cpu")
    out = []
    for i in range(0, len(images), batch):
        out.append(scorer(np.stack(images[i : i + batch]))[0])
    return np.concatenate(out)
