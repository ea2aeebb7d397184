"""Clean training pictures from the simulator, kept as separate CT and PET layers.

The development set shows fused PET/CT only, at one display. A radiologist also loads a CT
alone or a PET alone, and those pictures look nothing like a fused one (a PET alone is a hot
colour map on black, with the noise texture of real PET). The simulator behind the sample
study gives clean studies with their layers apart, so clinical faults can hit the right
layer before fusion (``layer_faults``) and every display mode can be shown as clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..render import PET_DISPLAY_MM, RenderSettings, SliceRenderer, display_shape, fuse, resize_slices, window_ct
from .layer_faults import Layers

MODES = ("petct", "ct", "pet")


@dataclass
class PhantomSlice:
    """One clean slice with its layers: simulated (CT and PET) or from a real study (either)."""

    scene: str
    ct_hu: np.ndarray | None  # (H, W) on the CT grid, display orientation
    pet_on_ct: np.ndarray | None  # SUV resampled onto the CT grid, as ``assess`` fuses it
    pet_native: np.ndarray | None  # SUV on the PET's own grid (a real one: already on the display grid)
    ct_px_mm: float
    pet_px_mm: float

    @property
    def modes(self) -> tuple[str, ...]:
        """The display modes this slice can be shown in."""
        have = {"ct": self.ct_hu is not None, "pet": self.pet_native is not None,
                "petct": self.ct_hu is not None and self.pet_on_ct is not None}
        return tuple(m for m in MODES if have[m])

    def layers(self, mode: str, pet_voxel_mm: float | None = None) -> Layers:
        """The layers ``assess`` would render for this display mode.

        A PET alone is shown at PET_DISPLAY_MM pixels; ``pet_voxel_mm`` (coarser than its own)
        stands in for a scanner that reconstructs bigger voxels, with their coarser noise.
        """
        if mode == "petct":
            return Layers(self.ct_hu, self.pet_on_ct, self.ct_px_mm)
        if mode == "ct":
            return Layers(self.ct_hu, None, self.ct_px_mm)
        pet = self.pet_native.astype(np.float32)
        if pet_voxel_mm is not None and pet_voxel_mm > self.pet_px_mm:
            pet = coarser_voxels(pet, self.pet_px_mm, pet_voxel_mm)
        rows, cols = display_shape(*pet.shape, (self.pet_px_mm, self.pet_px_mm))
        return Layers(None, resize_slices(pet[None], rows, cols)[0], PET_DISPLAY_MM)


# PET voxel sizes of clinical reconstructions, in-plane (mm).
CLINICAL_PET_VOXELS_MM = (2.0, 5.5)


def random_pet_voxel_mm(rng: np.random.Generator) -> float:
    """A clinical PET voxel size, for ``PhantomSlice.layers(..., pet_voxel_mm)``."""
    return float(rng.uniform(*CLINICAL_PET_VOXELS_MM))


def coarser_voxels(pet: np.ndarray, px_mm: float, voxel_mm: float) -> np.ndarray:
    """The PET slice as a scanner with ``voxel_mm`` voxels would give it, on the same grid:
    averaged over voxels of that size, then interpolated back."""
    f = px_mm / voxel_mm
    h, w = pet.shape
    small = resize_slices(ndimage.gaussian_filter(pet, 0.4 / f)[None], round(h * f), round(w * f))
    return resize_slices(small, h, w)[0]


def vary(layers: Layers, rng: np.random.Generator) -> Layers:
    """Another patient from the same simulated one: body size (+-15 % per axis), a small
    rotation, left-right mirroring, overall FDG uptake (SUV x 0.7 .. 1.4), and on half of the
    CTs the hardware around a patient (``add_hardware``)."""
    ref = layers.ct_hu if layers.ct_hu is not None else layers.pet_suv
    h, w = ref.shape
    angle = rng.uniform(-0.15, 0.15)
    scale = rng.uniform(0.85, 1.15, 2)
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[c, -s], [s, c]]) @ np.diag(1.0 / scale)  # output -> input coordinates
    if rng.random() < 0.5:
        m = m @ np.diag([1.0, -1.0])
    centre = np.array([h, w]) / 2.0
    offset = centre - m @ centre

    def warp(a: np.ndarray, air: float) -> np.ndarray:
        return ndimage.affine_transform(a, m, offset, order=1, mode="constant", cval=air).astype(np.float32)

    uptake = rng.uniform(0.7, 1.4)
    ct = None if layers.ct_hu is None else warp(layers.ct_hu, -1000.0)
    if ct is not None and rng.random() < 0.5:
        ct = add_hardware(ct, layers.px_mm, rng)
    return Layers(ct, None if layers.pet_suv is None else warp(layers.pet_suv, 0.0) * uptake, layers.px_mm)


def add_hardware(ct_hu: np.ndarray, px_mm: float, rng: np.random.Generator) -> np.ndarray:
    """1-3 thin bright lines and arcs in the air around the body: table shells and rails, ECG
    leads, cables. Clinical CTs show them (the LIDC chest CT's curved table rails, 1 mm wide at
    ~1000 HU, drew model 3's attention and its 'streaks' cause); they are not a fault."""
    h, w = ct_hu.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    body = ndimage.binary_fill_holes(ct_hu > -500)  # lungs are inside the body
    air = ~ndimage.binary_dilation(body, iterations=max(1, round(5.0 / px_mm)))
    out = ct_hu.copy()
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:  # an arc, centred above the image like a table's curved shell
            cy, cx = rng.uniform(-2 * h, 0.3 * h), rng.uniform(0.3 * w, 0.7 * w)
            radius = rng.uniform(0.6, 1.0) * h - cy
            dist = np.abs(np.hypot(yy - cy, xx - cx) - radius)
        else:  # a straight segment
            angle = rng.uniform(0, np.pi)
            y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
            dist = np.abs((yy - y0) * np.cos(angle) - (xx - x0) * np.sin(angle))
        half = max(0.5, rng.uniform(0.4, 1.5) / px_mm)  # 1-3 mm wide, at least a pixel
        weight = np.clip(half + 0.5 - dist, 0.0, 1.0) * air
        out = out + weight * (rng.uniform(300.0, 1500.0) - out)
    return out.astype(np.float32)


def render_layers(layers: Layers, settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """uint8 RGB picture of the layers, exactly as ``render.SliceRenderer`` blends them."""
    ct = window_ct(layers.ct_hu, settings) if layers.ct_hu is not None else None
    pet = layers.pet_suv / settings.suv_max if layers.pet_suv is not None else None
    return fuse(ct, pet, settings.pet_alpha)


def add_change(picture: np.ndarray, layers: Layers, faulted: Layers) -> np.ndarray:
    """``picture`` with only the change a fault made to its layers. Layers recovered from a fused
    picture (``Layers.of_picture``) re-render it only approximately (up to ~100 grey levels on a
    few % of pixels); adding the whole re-rendering would put that error in the picture too."""
    change = render_layers(faulted).astype(np.int16) - render_layers(layers).astype(np.int16)
    return np.clip(picture + change, 0, 255).astype(np.uint8)


def simulate_slices(noise_seed: int, anatomy_seed: int | None = None) -> list[PhantomSlice]:
    """Every slice of one simulated patient (None: the sample study's), acquired clean."""
    from .. import phantom

    tag = f"phantom-a{anatomy_seed if anatomy_seed is not None else 'default'}-n{noise_seed}"
    return as_slices(phantom.simulate_clean(anatomy_seed, noise_seed), tag)


def as_slices(vol, tag: str) -> list[PhantomSlice]:
    """Simulated volumes (``phantom.SimulatedVolumes``) -> one PhantomSlice per slice, the PET
    fused on the CT's grid as ``assess`` fuses it."""
    from .. import phantom

    ct_img = _image(vol.ct_hu, phantom.CT_SPACING, phantom.CT_ORIGIN)
    pet_img = _image(vol.pet_bqml, phantom.PET_SPACING, phantom.PET_ORIGIN)
    pet_on_ct = sitk.Resample(pet_img, ct_img, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    suv = vol.phantom.suv_per_bqml
    ct = sitk.GetArrayFromImage(ct_img).astype(np.float32)
    pet_ct = sitk.GetArrayFromImage(pet_on_ct) * suv
    pet = sitk.GetArrayFromImage(pet_img).astype(np.float32) * suv
    # LPS identity direction: rows run anterior -> posterior and columns right -> left, which is
    # already how Slicer's axial view shows a slice.
    return [
        PhantomSlice(f"{tag}-k{k}", ct[c], pet_ct[c], pet[c], ct_img.GetSpacing()[0], pet_img.GetSpacing()[0])
        for c, k in enumerate(vol.slices)
    ]


def _image(a: np.ndarray, spacing, origin) -> sitk.Image:
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def check_clinical_entry(volume: dict[str, str | list[str]]) -> None:
    """Refuses an entry of a recipe's clinical volumes that names a role other than ct / pet, or
    pools volumes beside another role."""
    if not isinstance(volume, dict) or not volume or not set(volume) <= {"ct", "pet"}:
        raise ValueError(f"a clinical volume entry maps 'ct' and / or 'pet' to paths, not {volume!r}")
    if any(isinstance(v, list) for v in volume.values()) and len(volume) != 1:
        raise ValueError(f"a pooled clinical entry holds one role with a list of volumes, not {volume}")


def clinical_study(volume: dict[str, str | list[str]], root: str | Path, every: int = 1) -> list[PhantomSlice]:
    """The clean slices of one entry of a recipe's ``clinical_volumes`` (paths relative to ``root``).
    An entry whose role holds a list (``{"pet": [a, b, ...]}``) pools those volumes into one study, so
    that a set of short crops is drawn as often as one whole-body study, not once per crop."""
    check_clinical_entry(volume)
    if any(isinstance(v, list) for v in volume.values()):
        (role, paths), = volume.items()
        return [s for p in paths for s in clinical_slices(**{role: Path(root) / p}, every=every)]
    return clinical_slices(**{role: Path(root) / rel for role, rel in volume.items()}, every=every)


def clinical_slices(ct: str | Path | None = None, pet: str | Path | None = None, every: int = 1) -> list[PhantomSlice]:
    """Every ``every``-th slice of a real study of diagnostic quality, read and scaled exactly as
    ``assess`` reads it (so a PET without SUV tags gets the same pseudo-SUV): the normal noise
    and texture of clinical scanners, shown to the network as clean."""
    r = SliceRenderer(ct=ct, pet=pet)
    hu, suv = r.layers(0, len(r))
    # A PET alone comes out of the renderer on the display grid already.
    px = float(r.reference.GetSpacing()[0]) if hu is not None else PET_DISPLAY_MM
    source = Path(ct if ct is not None else pet)
    tag = source.parent.name if source.name == "image" else source.name
    # A PET alone is kept as pet_native (on the display grid); with a CT it is fused on the CT's.
    on_ct, native = (suv, None) if hu is not None else (None, suv)
    pick = lambda a, k: None if a is None else a[k]  # noqa: E731
    return [
        PhantomSlice(f"{tag}-k{k}", pick(hu, k), pick(on_ct, k), pick(native, k), px, px)
        for k in range(0, len(r), every)
    ]
