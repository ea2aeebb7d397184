"""Training from scratch on native-resolution crops of real and synthetic images.

A batch holds several scenes and several versions of each, so that a ranking loss can
compare versions of the same anatomy (what within-scene SROCC measures) beside the
regression loss on the 0-4 scale. Every step draws its randomness from (seed, step), so a
run resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy import ndimage

from ..causes import CAUSES
from ..errors import InputError
from ..models import GRID_STRIDE, MSIQANet, create_model
from ..models.msiqa_net import Output
from .datasets import Sample
from .degrade import CAUSE_OF, FAMILIES, degrade
from .handcrafted import Calibration, features
from .labels import ANCHORS, CLEAN_MOS, NAMED_FROM, faulted_score
from .layer_faults import Layers, applicable, apply_fault
from .phantom_bank import (add_change, check_clinical_entry, clinical_study, random_pet_voxel_mm, render_layers,
                           simulate_slices, vary)
from .physical_faults import SHOWN_IN, PhysicalGroup, build_bank

# Families whose effect the hand-made features measure on the real grid: their synthetic
# labels come from the fitted calibration. JPEG 2000 (ringing, which none of the features
# sees) drops by a fixed amount per strength; the clinical faults follow ``labels.ANCHORS``.
CALIBRATED = {"jpeg8", "jpeg12", "impulse", "gaussian_noise", "speckle", "poisson_noise"}
UNCALIBRATED_DROP = 1.5
# Faults that can hit one part of a picture; the others are global by nature (a low-count
# PET is noisy everywhere, a misregistered PET is shifted as a whole).
LOCAL_FAULTS = set(FAMILIES) | {"motion", "streaks"}
DEV_PX_MM = 0.9  # the development pictures: 512 pixels over a ~46 cm thoracic field of view
IGNORE = -100  # cross-entropy's ignore index: no cause label for this crop
# Recipe keys a tail may change (``TrainConfig.tail``): what a step's loss and its pointing crops are
# made of, none that needs data loaded before training starts.
TAIL_KEYS = {"pointing", "pointing_order", "attention_weight", "attention_loss", "cause_weight", "anchor_weight",
             "rank_weight", "focus_attention"}


@dataclass
class TrainConfig:
    preset: str = "compact"
    overrides: dict[str, Any] = field(default_factory=dict)
    steps: int = 1500
    batch_scenes: int = 4  # development scenes per batch
    per_scene: int = 6
    crop: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 50
    synthetic: float = 0.3  # fraction of development crops replaced by a synthetic degradation
    layer_faults: float = 0.0  # of those, the fraction that gets a clinical (layer) fault
    local: float = 0.3  # of the degraded crops, fraction degraded in one sub-square only
    labels: str = "calibrated"  # or "fixed": drop = UNCALIBRATED_DROP * strength for every family
    rank_weight: float = 1.0
    # Simulated studies (clean, all three display modes, then faulted): scenes per batch, and
    # which simulator noise seeds and anatomies they come from.
    phantom_scenes: int = 0
    phantom_noise_seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    phantom_anatomies: list[int | None] = field(default_factory=lambda: [None])
    # Real studies of diagnostic quality (clean, their own display mode, then faulted): scenes per
    # batch, and the volumes ({"ct": path} and/or {"pet": path}, relative to the clinical root
    # given to ``train``), every ``clinical_every``-th slice. A role holding a list pools those volumes
    # into one study (``phantom_bank.clinical_study``): many short crops drawn as often as one study.
    clinical_scenes: int = 0
    clinical_volumes: list[dict[str, str | list[str]]] = field(default_factory=list)
    clinical_every: int = 1
    # Clinical faults as the simulator's scanners make them (``physical_faults``): groups per
    # batch, the simulated patients (never the sample study's) and the slices per family.
    physical_scenes: int = 0
    physical_anatomies: list[int] = field(default_factory=lambda: [1, 2, 3])
    physical_noise_seed: int = 7
    physical_slices: int = 3
    physical_pick: str = "random"  # or "visible": misregistration and breathing where they show
    # Relative frequency of each fault family (physical_faults.SHOWN_IN) among the groups; {}:
    # every group equally often. Five times more misregistration and breathing groups did not make
    # the network see them in mixed batches (benchmarks/RESULTS.md, recipe 10).
    physical_weights: dict[str, float] = field(default_factory=dict)
    # A curriculum for faults too subtle to be found in mixed batches: for the steps in
    # [start, stop) of ``focus_steps`` a batch is ``focus_groups`` scanner-made groups of
    # ``focus_families`` and nothing else. 300 such steps taught a trained network to see
    # misregistration on an unseen patient (benchmarks/RESULTS.md, measurement 3). With
    # ``focus_every`` n > 1 only every n-th step of the phase is such a batch and the steps between
    # stay mixed, so that what the other batches taught is not forgotten while the focus lasts.
    focus_families: list[str] = field(default_factory=list)
    focus_steps: list[int] = field(default_factory=list)
    focus_groups: int = 4
    focus_every: int = 1
    # False: focus batches do not train the attention weights. Their faults are global and carry no
    # region, and a tail of them blurred the maps; off, fewer were blurred but CV fold 2 lost 0.12
    # SROCC (benchmarks/RESULTS.md, the tail on all three folds).
    focus_attention: bool = True
    # Fine-tuning after the schedule: ``tail_steps`` more steps at the constant ``tail_lr`` once
    # the cosine schedule's ``steps`` are done. The first ``steps`` are then the recipe without a
    # tail, step for step, so a tail can resume from that recipe's final checkpoint. Meant for focus
    # steps interleaved with mixed ones on a trained network; 400 such steps at up to 3e-4 did not
    # make misregistration or breathing seen (benchmarks/RESULTS.md, fine-tuning tails).
    # Every other key acts on all steps, the first ``steps`` included, unless ``tail`` gives it
    # another value for the tail's steps (only the keys in TAIL_KEYS: losses and pointing crops).
    # The measured pointing tails (recipes 17-30) resumed from a checkpoint of the recipe without them.
    tail_steps: int = 0
    tail_lr: float = 0.0
    tail: dict[str, Any] = field(default_factory=dict)
    # Real studies (as ``clinical_volumes``) the clean clinical groups also draw from in the tail's
    # steps only, so that a tail can teach the normal noise of more scanners and still resume from
    # the checkpoint of the recipe without them.
    tail_clinical_volumes: list[dict[str, str]] = field(default_factory=list)
    # Of the versions after the first in a simulated or real group, the share that stays clean.
    clean_share: float = 0.0
    cause_weight: float = 0.0  # cross-entropy of the cause head
    attention_weight: float = 0.0  # share of attention a local fault's region must hold
    # "share": -log of the attention's share inside the region; "peak": a hinge that only asks the
    # map's highest cell to lie inside it (what the pointing game measures).
    attention_loss: str = "share"
    # Per development scene in a batch, crops of its best-rated version with a fault in one part
    # of the picture. The radiologists never scored them, so they carry no score: only the order
    # below their source, the region (attention loss) and the cause.
    pointing: int = 0
    # False: pointing crops teach the region and the cause but not that they score under their source.
    pointing_order: bool = True
    # In a tail: KL divergence of the weight map on scored crops from the map of the network the
    # tail started from. The map also averages a whole picture's cell scores, and what moved it on
    # scored pictures cost the ranking (benchmarks/RESULTS.md, the anchored pointing tail); held there, the
    # pointing crops can still teach it to peak on a local fault.
    anchor_weight: float = 0.0
    seed: int = 0
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        if self.tail_steps < 0 or (self.tail_steps and self.tail_lr <= 0):
            raise ValueError(f"a tail is tail_steps > 0 at a tail_lr > 0, not {self.tail_steps} steps at "
                             f"{self.tail_lr}; leave both out for none")
        unknown = set(self.tail) - TAIL_KEYS
        if unknown or (self.tail and not self.tail_steps):
            raise ValueError(f"tail gives other values in the tail's steps to {sorted(TAIL_KEYS)} and needs "
                             f"tail_steps; not {sorted(unknown) or 'without tail_steps'}")
        self.at(self.steps)  # the tail's values are checked now, not when the tail begins
        if self.tail_clinical_volumes and not (self.tail_steps and self.clinical_scenes > 0):
            raise ValueError("tail_clinical_volumes adds real studies to the tail's clean clinical groups: it "
                             "needs tail_steps and clinical_scenes > 0")
        for volume in (*self.clinical_volumes, *self.tail_clinical_volumes):
            check_clinical_entry(volume)  # now, not after the data have loaded
        if self.anchor_weight and not self.tail_steps:
            raise ValueError("anchor_weight holds the map of the network a tail starts from: it needs tail_steps")
        if self.attention_loss not in REGION_LOSSES:
            raise ValueError(f"attention_loss is one of {sorted(REGION_LOSSES)}, not {self.attention_loss!r}")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls(**json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at(self, step: int) -> "TrainConfig":
        """The recipe as it holds for ``step``: with the tail's own values once the tail has begun."""
        return replace(self, **self.tail, tail={}) if self.tail and step >= self.steps else self

    @property
    def total_steps(self) -> int:
        return self.steps + self.tail_steps


def _crop_origin(img: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """A random crop origin on the 8x8 JPEG block grid, mostly inside the body."""
    h, w = img.shape[:2]
    best = (0, 0, -1.0)
    for _ in range(6):
        y = int(rng.integers(0, max(0, h - crop) // 8 + 1)) * 8
        x = int(rng.integers(0, max(0, w - crop) // 8 + 1)) * 8
        body = float((img[y : y + crop : 4, x : x + crop : 4].max(-1) > 12).mean())
        if body > 0.6:
            return y, x
        if body > best[2]:
            best = (y, x, body)
    return best[0], best[1]


def _fault_window(clean: np.ndarray, faulty: np.ndarray, crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """A crop origin (on the 8x8 grid) around where a fault changed the picture most, so the
    label of a regional fault (misregistration and breathing at the liver dome, metal at the
    spine) is given to a crop that shows it."""
    h, w = clean.shape[:2]
    diff = np.abs(faulty.astype(np.float32) - clean.astype(np.float32)).sum(-1)
    sums = ndimage.uniform_filter(diff, size=crop // 2, mode="constant")
    cy, cx = np.unravel_index(int(np.argmax(sums)), sums.shape)
    jitter = rng.integers(-crop // 4, crop // 4 + 1, 2)
    y = int(np.clip(cy + jitter[0] - crop // 2, 0, max(0, h - crop))) // 8 * 8
    x = int(np.clip(cx + jitter[1] - crop // 2, 0, max(0, w - crop))) // 8 * 8
    return y, x


def _pad(img: np.ndarray, size: int) -> np.ndarray:
    """Black (air) padding up to size x size, as the scorer pads small pictures."""
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    out = np.zeros((max(h, size), max(w, size), 3), np.uint8)
    out[:h, :w] = img
    return out


@dataclass
class Crop:
    image: np.ndarray  # (crop, crop, 3) uint8
    mos: float
    group: int
    cause: int = IGNORE
    region: tuple[slice, slice] | None = None  # where a local fault is, if it mattered
    below: int = -1  # unscored (mos is NaN): the index in the batch of the crop it must score under


class BatchMaker:
    def __init__(self, samples: list[Sample], config: TrainConfig, phantom: list[list] | None = None,
                 clinical: list[list] | None = None, physical: list[PhysicalGroup] | None = None,
                 focus: list[PhysicalGroup] | None = None, tail_clinical: list[list] | None = None):
        """``phantom`` and ``clinical``: clean slices (``PhantomSlice``), one list per study
        (``tail_clinical``: the real studies added in the tail's steps);
        ``physical``: simulated slices with their scanner-made faults; ``focus``: those the focus
        batches draw from (default: ``physical``'s groups of the focus families)."""
        self.samples, self.recipe, self.c = samples, config, config
        self.by_scene: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            self.by_scene.setdefault(s.scene, []).append(i)
        self.scenes = sorted(self.by_scene)
        self.best = {scene: max(members, key=lambda i: samples[i].mos) for scene, members in self.by_scene.items()}
        self.phantom = phantom or []
        self.clinical = clinical or []
        self.tail_clinical = tail_clinical or []
        self.physical = physical or []
        self.focus = [g for g in (self.physical if focus is None else focus) if g.family in config.focus_families]
        for key in ("physical_weights", "focus_families"):
            unknown = set(getattr(config, key)) - set(SHOWN_IN)
            if unknown:
                raise ValueError(f"{key} names no fault family: {sorted(unknown)}; families: {sorted(SHOWN_IN)}")
        if config.focus_families:
            if len(config.focus_steps) != 2 or not 0 <= config.focus_steps[0] < config.focus_steps[1]:
                raise ValueError(f"focus_steps must be [start, stop) with 0 <= start < stop, not {config.focus_steps}")
            if config.focus_every < 1:
                raise ValueError(f"focus_every must be 1 (every step of focus_steps) or more, not {config.focus_every}")
            missing = set(config.focus_families) - {g.family for g in self.focus}
            if missing:
                raise ValueError(f"focus_families {sorted(missing)} have no scanner-made groups: "
                                 "the recipe needs physical_scenes > 0")
        self.calibration = None
        # Picture faults go on simulated and real slices even when no development picture gets
        # one (synthetic 0): their labels need the calibration all the same.
        if config.labels == "calibrated":
            feats = np.array([features(s.image) for s in samples])
            self.calibration = Calibration.fit(feats, np.array([s.mos for s in samples]))

    def _region(self, rng: np.random.Generator, always: bool = False) -> tuple[slice, slice] | None:
        if not always and rng.random() >= self.c.local:
            return None
        size = self.c.crop // 2
        y, x = (int(rng.integers(0, 2)) * size for _ in range(2))
        return slice(y, y + size), slice(x, x + size)

    def _picture_fault(self, crop: np.ndarray, rng: np.random.Generator,
                       local: bool = False) -> tuple[np.ndarray, float, str, tuple | None]:
        family = str(rng.choice(sorted(FAMILIES)))
        s = float(rng.uniform(0.15, 1.0))
        region = self._region(rng, local)
        out = degrade(crop, family, s, rng, region)
        area = region or (slice(None), slice(None))
        if self.calibration is not None and family in CALIBRATED:
            # The change the calibration predicts, measured where the degradation is.
            drop = max(0.0, float(self.calibration(features(crop[area])) - self.calibration(features(out[area]))))
        elif family == "blur" and self.c.labels == "calibrated":
            drop = ANCHORS["blur"].drop(2.3548 * (0.6 + 2.4 * s))
        else:
            drop = UNCALIBRATED_DROP * s
        return out, drop, CAUSE_OF[family], region

    def _layer_fault(self, layers: Layers, rng: np.random.Generator,
                     local: bool = False) -> tuple[np.ndarray, float, str, tuple | None]:
        out, drop, family, region = self._faulted_layers(layers, rng, local)
        return render_layers(out), drop, family, region

    def _faulted_layers(self, layers: Layers, rng: np.random.Generator,
                        local: bool = False) -> tuple[Layers, float, str, tuple | None]:
        if local:
            # Any fault can be confined to a region but a shift of the whole PET.
            family = str(rng.choice([f for f in applicable(layers) if f != "misregistration"]))
            region = self._region(rng, True)
        else:
            family = str(rng.choice(applicable(layers)))
            region = self._region(rng) if family in LOCAL_FAULTS else None
        out, applied = apply_fault(layers, family, float(rng.uniform(0.05, 1.0)), rng, region)
        return out, applied.drop, family, region

    def _labelled(self, image, source_mos, drop, cause, region, group, clean_source: bool) -> Crop:
        mos = faulted_score(source_mos, drop)
        if drop >= NAMED_FROM:
            # A fault added to an already degraded picture is not the only one there.
            label = CAUSES.index(cause) if clean_source else IGNORE
        else:
            label = CAUSES.index("none") if clean_source else IGNORE
        return Crop(image, mos, group, label, region if drop >= NAMED_FROM else None)

    def _dev_crop(self, sample: Sample, window: tuple[int, int, bool], group: int, rng: np.random.Generator,
                  synthetic: bool = True) -> Crop:
        y, x, flip = window
        crop = sample.image[y : y + self.c.crop, x : x + self.c.crop]
        if flip:
            crop = crop[:, ::-1]
        crop = np.ascontiguousarray(crop)
        clean = sample.mos >= CLEAN_MOS - 0.2
        if not synthetic or rng.random() >= self.c.synthetic:
            return Crop(crop, sample.mos, group, CAUSES.index("none") if clean else IGNORE)
        if rng.random() < self.c.layer_faults:
            out = self._layer_fault(Layers.of_picture(crop, DEV_PX_MM), rng)
        else:
            out = self._picture_fault(crop, rng)
        return self._labelled(out[0], sample.mos, out[1], out[2], out[3], group, clean)

    def _pointing_crops(self, scene: str, window: tuple[int, int, bool], group: int, first: int,
                        rng: np.random.Generator) -> list[Crop]:
        """The scene's best-rated version in the batch's window, then local faults on it."""
        source = self._dev_crop(self.samples[self.best[scene]], window, group, rng, synthetic=False)
        clean = self.samples[self.best[scene]].mos >= CLEAN_MOS - 0.2
        layers = Layers.of_picture(source.image, DEV_PX_MM)
        crops = [source]
        for _ in range(self.c.pointing):
            if rng.random() < self.c.layer_faults:
                # Only the fault's change, so that the layers' approximation cannot mark the region.
                faulted, drop, cause, region = self._faulted_layers(layers, rng, local=True)
                image = add_change(source.image, layers, faulted)
            else:
                image, drop, cause, region = self._picture_fault(source.image, rng, local=True)
            crop = self._labelled(image, source.mos, drop, cause, region, group, clean)
            crop.mos = float("nan")
            if crop.region is not None:  # a fault too mild to name is not ordered either
                crop.below = first
            crops.append(crop)
        return crops

    def _clean_slice_crops(self, bank: list, group: int, rng: np.random.Generator) -> list[Crop]:
        """Versions of one clean slice (simulated or real) in one of its display modes: the clean
        one, then faulted ones, and (``clean_share``) clean crops from elsewhere on the slice,
        so that the texture of a good study is not seen mostly in its faulted versions."""
        study = bank[int(rng.integers(len(bank)))]  # every study equally often, however long
        src = study[int(rng.integers(len(study)))]
        mode = str(rng.choice(src.modes))
        layers = vary(src.layers(mode, pet_voxel_mm=random_pet_voxel_mm(rng) if mode == "pet" else None), rng)
        # One crop window for every version, so that the ranking compares like with like.
        picture = _pad(render_layers(layers), self.c.crop)
        y, x = _crop_origin(picture, self.c.crop, rng)
        window = (slice(y, y + self.c.crop), slice(x, x + self.c.crop))
        layers = Layers(
            None if layers.ct_hu is None else layers.ct_hu[window],
            None if layers.pet_suv is None else layers.pet_suv[window],
            layers.px_mm,
        )
        clean = _pad(render_layers(layers), self.c.crop)
        crops = [Crop(clean, CLEAN_MOS, group, CAUSES.index("none"))]
        for _ in range(self.c.per_scene - 1):
            if rng.random() < self.c.clean_share:
                # Anywhere, air and table included: a whole slice is scored, not only its body.
                y = int(rng.integers(0, picture.shape[0] - self.c.crop + 1))
                x = int(rng.integers(0, picture.shape[1] - self.c.crop + 1))
                crops.append(Crop(np.ascontiguousarray(picture[y : y + self.c.crop, x : x + self.c.crop]),
                                  CLEAN_MOS, group, CAUSES.index("none")))
                continue
            if rng.random() < 0.6:
                img, drop, cause, region = self._layer_fault(layers, rng)
                img = _pad(img, self.c.crop)
            else:
                img, drop, cause, region = self._picture_fault(clean, rng)
            crops.append(self._labelled(img, CLEAN_MOS, drop, cause, region, group, True))
        return crops

    def _physical_group(self, rng: np.random.Generator, focus: bool = False) -> PhysicalGroup:
        if not self.c.physical_weights and not focus:
            return self.physical[int(rng.integers(len(self.physical)))]
        families = sorted(self.c.focus_families) if focus else sorted({g.family for g in self.physical})
        p = np.array([1.0 if focus else self.c.physical_weights.get(f, 1.0) for f in families], float)
        family = families[int(rng.choice(len(families), p=p / p.sum()))]
        members = [g for g in (self.focus if focus else self.physical) if g.family == family]
        return members[int(rng.integers(len(members)))]

    def _physical_crops(self, group: int, rng: np.random.Generator, focus: bool = False) -> list[Crop]:
        """One simulated slice clean and with its scanner-made fault at several severities, in a
        display mode that shows the fault, every version through the same variation and crop."""
        g = self._physical_group(rng, focus)
        mode = str(rng.choice(SHOWN_IN[g.family]))
        voxel = random_pet_voxel_mm(rng) if mode == "pet" else None
        look = int(rng.integers(2**31))  # the same patient variation for every version
        versions = [(g.clean, 0.0, "none")] + [(f.slice, f.drop, f.cause) for f in g.faulted]
        pictures = [_pad(render_layers(vary(v.layers(mode, voxel), np.random.default_rng(look))), self.c.crop)
                    for v, _, _ in versions]
        y, x = _fault_window(pictures[0], pictures[-1], self.c.crop, rng)
        pick = [0] + list(rng.choice(np.arange(1, len(versions)), size=self.c.per_scene - 1,
                                     replace=len(versions) - 1 < self.c.per_scene - 1))
        crops = []
        for i in pick:
            _, drop, cause = versions[i]
            image = np.ascontiguousarray(pictures[i][y : y + self.c.crop, x : x + self.c.crop])
            crops.append(self._labelled(image, CLEAN_MOS, drop, cause, None, group, True))
        return crops

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        self.c = self.recipe.at(step)
        rng = np.random.default_rng([self.c.seed, step])
        if self.is_focus(step):
            return self._collate([c for g in range(self.c.focus_groups) for c in self._physical_crops(g, rng, focus=True)])
        scenes = rng.choice(len(self.scenes), size=min(self.c.batch_scenes, len(self.scenes)), replace=False)
        crops: list[Crop] = []
        for g, si in enumerate(scenes):
            members = self.by_scene[self.scenes[si]]
            picked = rng.choice(members, size=self.c.per_scene, replace=len(members) < self.c.per_scene)
            # The versions of a scene are pixel-aligned: one window for all of them, so that the
            # ranking compares degradations on the same anatomy. Its impulse pixels are sparse (about
            # one per 32x32 cell), and crops from different places differed more in how many they
            # happened to hold than the versions' densities differ.
            window = (*_crop_origin(self.samples[picked[0]].image, self.c.crop, rng), bool(rng.random() < 0.5))
            for i in picked:
                crops.append(self._dev_crop(self.samples[i], window, g, rng))
            if self.c.pointing:
                crops.extend(self._pointing_crops(self.scenes[si], window, g, len(crops), rng))
        group = len(scenes)
        clinical = self.clinical + self.tail_clinical if step >= self.recipe.steps else self.clinical
        for bank, n in ((self.phantom, self.c.phantom_scenes), (clinical, self.c.clinical_scenes)):
            for _ in range(n if bank else 0):
                crops.extend(self._clean_slice_crops(bank, group, rng))
                group += 1
        for _ in range(self.c.physical_scenes if self.physical else 0):
            crops.extend(self._physical_crops(group, rng))
            group += 1
        return self._collate(crops)

    def is_focus(self, step: int) -> bool:
        if not self.c.focus_families:
            return False
        start, stop = self.c.focus_steps
        return start <= step < stop and (step - start) % self.c.focus_every == 0

    def _collate(self, crops: list[Crop]) -> dict[str, torch.Tensor]:
        cells = self.c.crop // GRID_STRIDE
        region = torch.zeros(len(crops), 1, cells, cells)
        for i, c in enumerate(crops):
            if c.region is not None:
                ys, xs = c.region
                region[i, 0, ys.start // GRID_STRIDE : ys.stop // GRID_STRIDE, xs.start // GRID_STRIDE : xs.stop // GRID_STRIDE] = 1
        return {
            "x": torch.from_numpy(np.stack([c.image for c in crops])).permute(0, 3, 1, 2).float().div_(255.0),
            "mos": torch.tensor([c.mos for c in crops], dtype=torch.float32),
            "group": torch.tensor([c.group for c in crops]),
            "cause": torch.tensor([c.cause for c in crops]),
            "region": region,
            "below": torch.tensor([c.below for c in crops]),
        }


def step_loss(out: Output, b: dict[str, torch.Tensor], config: TrainConfig, anchor: Output | None = None) -> torch.Tensor:
    """One batch's loss: the network's output against the batch ``BatchMaker`` made, and with
    ``anchor`` (the tail's starting network on the same batch) against that network's map."""
    scored = ~torch.isnan(b["mos"])
    score, mos = out.score[scored], b["mos"][scored]
    loss = F.smooth_l1_loss(score, mos) + config.rank_weight * ranking_loss(score, mos, b["group"][scored])
    if config.pointing and config.pointing_order:
        loss = loss + config.rank_weight * order_loss(out.score, b["below"])
    if config.cause_weight > 0 and out.cause is not None and (b["cause"] != IGNORE).any():
        loss = loss + config.cause_weight * F.cross_entropy(out.cause, b["cause"], ignore_index=IGNORE)
    if config.attention_weight > 0:
        loss = loss + config.attention_weight * REGION_LOSSES[config.attention_loss](out.weight, b["region"])
    if anchor is not None and config.anchor_weight > 0:
        loss = loss + config.anchor_weight * map_divergence(anchor.weight[scored], out.weight[scored])
    return loss


def map_divergence(reference: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """KL(reference || weight) between the maps as distributions over their cells, per crop, averaged."""
    if not len(weight):
        return weight.sum() * 0.0
    p = reference.flatten(1) / reference.flatten(1).sum(1, keepdim=True).clamp_min(1e-6)
    q = weight.flatten(1) / weight.flatten(1).sum(1, keepdim=True).clamp_min(1e-6)
    return (p * (torch.log(p + 1e-8) - torch.log(q + 1e-8))).sum(1).mean()


def attention_loss(weight: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """-log of the share of attention inside a local fault's region (crops with one only)."""
    has = region.flatten(1).any(dim=1)
    if not has.any():
        return weight.sum() * 0.0
    w = weight[has].flatten(1)
    inside = (w * region[has].flatten(1)).sum(1)
    return -torch.log(inside / w.sum(1).clamp_min(1e-6) + 1e-6).mean()


def peak_loss(weight: torch.Tensor, region: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Hinge making the highest weight inside a local fault's region exceed the highest outside."""
    has = region.flatten(1).any(dim=1) & ~region.flatten(1).all(dim=1)
    if not has.any():
        return weight.sum() * 0.0
    w, r = weight[has].flatten(1), region[has].flatten(1).bool()
    inside = w.masked_fill(~r, -1.0).amax(1)
    outside = w.masked_fill(r, -1.0).amax(1)
    return F.relu(margin - (inside - outside)).mean()


# The recipe key ``attention_loss`` names one of these.
REGION_LOSSES = {"share": attention_loss, "peak": peak_loss}


def order_loss(pred: torch.Tensor, below: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Hinge making each unscored faulted crop score under the crop it was made from."""
    has = below >= 0
    if not has.any():
        return pred.sum() * 0.0
    return F.relu(margin - (pred[below[has]] - pred[has])).mean()


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, groups: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Hinge on every same-scene pair whose labels differ by at least 0.2."""
    dp = pred[:, None] - pred[None, :]
    dt = target[:, None] - target[None, :]
    pairs = (groups[:, None] == groups[None, :]) & (dt >= 0.2)
    if not pairs.any():
        return pred.sum() * 0.0
    return F.relu(margin - dp[pairs]).mean()


def _lr(step: int, c: TrainConfig) -> float:
    if step >= c.steps:
        return c.tail_lr
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


def _anchor_network(net: MSIQANet, ckpt: Path | None, step: int, config: TrainConfig) -> MSIQANet:
    """The network a tail started from, as ``anchor_weight`` compares maps with: saved beside the
    checkpoint when the tail starts, so that a run resumed inside the tail holds the same one."""
    anchor = copy.deepcopy(net)
    path = ckpt.with_name("anchor.safetensors") if ckpt is not None else None
    if step == config.steps:
        if path is not None:
            save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, str(path))
    elif path is not None and path.exists():
        anchor.load_state_dict(load_file(str(path)))
    else:
        raise InputError(f"this run resumes at step {step}, inside its tail, but the network the tail started "
                         f"from (anchor.safetensors beside the checkpoint) is gone: start the tail again from "
                         f"the checkpoint of step {config.steps}")
    # Maps compared on the same batch, normalised as the training network's are (batch statistics),
    # without dropout and without touching the running statistics.
    for m in anchor.modules():
        m.training = isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        if m.training:
            m.momentum = 0.0
    return anchor.requires_grad_(False)


def focus_bank(config: TrainConfig, physical: list[PhysicalGroup]) -> list[PhysicalGroup]:
    """The scanner-made groups the focus batches draw from: always slices that show the fault, since
    a focus on slices that do not teaches nothing (measurement 1), whatever the mixed batches draw."""
    if not config.focus_families or not physical or config.physical_pick == "visible":
        return physical
    return build_bank(config.physical_anatomies, config.physical_noise_seed, config.physical_slices,
                      seed=config.seed, pick="visible", families=config.focus_families)


def train(
    samples: list[Sample],
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    clinical_root: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> MSIQANet:
    """Train a network from scratch; with ``out_dir``, checkpoint there and resume from it.

    ``clinical_root`` is the folder the recipe's ``clinical_volumes`` are relative to.
    """
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
    phantom = []
    if config.phantom_scenes > 0:
        for anatomy in config.phantom_anatomies:
            for noise in config.phantom_noise_seeds:
                phantom.append(simulate_slices(noise, anatomy))
        log(f"{sum(map(len, phantom))} clean simulated slices from {len(phantom)} studies")
    clinical, tail_clinical = [], []
    if config.clinical_scenes > 0 and (config.clinical_volumes or config.tail_clinical_volumes):
        if clinical_root is None:
            keys = " and ".join(k for k in ("clinical_volumes", "tail_clinical_volumes") if getattr(config, k))
            raise InputError(f"this recipe trains on real clinical studies ({keys}): give the folder "
                             "they are in (--clinical-root); the model card names their public source.")
        for volumes, bank in ((config.clinical_volumes, clinical), (config.tail_clinical_volumes, tail_clinical)):
            for volume in volumes:
                bank.append(clinical_study(volume, clinical_root, config.clinical_every))
        log(f"{sum(map(len, clinical))} clean clinical slices from {len(clinical)} studies"
            + (f", {sum(map(len, tail_clinical))} more from {len(tail_clinical)} in the tail" if tail_clinical else ""))
    physical = []
    if config.physical_scenes > 0:
        physical = build_bank(config.physical_anatomies, config.physical_noise_seed, config.physical_slices, seed=config.seed,
                              pick=config.physical_pick)
        log(f"{len(physical)} simulated slices with scanner-made faults, {sum(len(g.faulted) for g in physical)} versions")
    make_batch = BatchMaker(samples, config, phantom, clinical, physical, focus_bank(config, physical), tail_clinical)
    net.train()
    # A focus batch holds one kind of picture: its statistics must not become the running ones
    # every picture is normalised with at inference (they cost a half-focus tail 0.05 on fold 0).
    norms = [(m, m.momentum) for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    t0, running, anchor_net = time.time(), None, None
    for step in range(start, config.total_steps):
        now = config.at(step)
        if now.anchor_weight > 0 and step >= config.steps and anchor_net is None:
            anchor_net = _anchor_network(net, ckpt, step, config)
        torch.manual_seed(config.seed * 1_000_003 + step)
        b = make_batch(step)
        focus = make_batch.is_focus(step)
        for norm, momentum in norms:
            norm.momentum = 0.0 if focus else momentum
        for group in opt.param_groups:
            group["lr"] = _lr(step, config)
        anchor = None
        if anchor_net is not None:
            with torch.no_grad():
                anchor = anchor_net(b["x"])
        loss = step_loss(net(b["x"], detach_weight=focus and not now.focus_attention), b, now, anchor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}")
        if ckpt is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.total_steps):
            _save_checkpoint(ckpt, net, opt, step + 1)
    for norm, momentum in norms:  # a network that ends on a focus step must not keep its statistics frozen
        norm.momentum = momentum
    if bar is not None:
        bar.close()
    log(f"trained {config.total_steps - start} steps in {time.time() - t0:.0f} s")
    return net.eval()


@torch.inference_mode()
def predict(net: MSIQANet, images: list[np.ndarray], batch: int = 4) -> np.ndarray:
    """Whole-picture scores (as ``assess`` computes them) for a list of same-size pictures."""
    from ..assess import Scorer
    from ..weights import LoadedModel

    scorer = Scorer(LoadedModel(net.eval(), {}, Path()), device="cpu")
    out = []
    for i in range(0, len(images), batch):
        out.append(scorer(np.stack(images[i : i + batch])).scores)
    return np.concatenate(out)
