"""Synthetic degradations of fused PET/CT pictures, at native resolution.

The development set is a designed grid of JPEG quantisation x impulse pixels x noise. These
functions reproduce those families at other levels and on other anatomy, and add the ones a
archive or a display adds (12-bit JPEG, JPEG 2000, blur). The faults of one modality
(``layer_faults``) act on the layers of a fused picture instead: ``split_layers`` inverts the
blend of ``render.fuse`` (CT grey from the blue channel, PET level from red/green).
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import MissingDependency
from ..render import RenderSettings

Degradation = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]
ALPHA = RenderSettings().pet_alpha


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def jpeg8(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Baseline JPEG; s in [0, 1] maps to quality 60 .. 5."""
    q = int(round(60 - 55 * s))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=max(2, q), subsampling=0)
    return np.asarray(Image.open(buf).convert("RGB"))


def codecs():
    """imagecodecs (12-bit JPEG, JPEG 2000), an optional package: only training needs it."""
    try:
        import imagecodecs
    except ImportError:
        raise MissingDependency(
            "the 12-bit JPEG and JPEG 2000 degradations need the imagecodecs package, which is not installed. "
            "Install the training extra: pip install msiqa[train]"
        ) from None
    return imagecodecs


def jpeg12(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """12-bit JPEG of each channel (as DICOM archives store CT), quality 50 .. 3."""
    q = int(round(50 - 47 * s))
    imagecodecs = codecs()
    out = np.empty_like(img)
    for c in range(3):
        enc = imagecodecs.jpeg8_encode((img[..., c].astype(np.uint16) << 4), level=q, bitspersample=12)
        out[..., c] = _u8(imagecodecs.jpeg8_decode(enc) / 16.0)
    return out


def jpeg2000(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Lossy JPEG 2000 (wavelet blur and ringing); s maps to PSNR 40 .. 22 dB."""
    imagecodecs = codecs()
    return imagecodecs.jpeg2k_decode(imagecodecs.jpeg2k_encode(img, level=40 - 18 * s))


def impulse(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Isolated salt-and-pepper pixels, density 0.05 % .. 3 % (log-spaced)."""
    density = 10 ** (-3.3 + 1.8 * s)
    out = img.copy()
    hit = rng.random(img.shape[:2]) < density
    out[hit] = rng.choice(np.array([0, 255], np.uint8), size=(int(hit.sum()), 1))
    return out


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    return _u8(img + rng.normal(0, 2 + 22 * s, img.shape[:2])[..., None])


def speckle(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Multiplicative noise, slightly correlated (as ultrasound-like speckle)."""
    n = ndimage.gaussian_filter(rng.normal(0, 1, img.shape[:2]), 0.7)
    n /= n.std() + 1e-6
    return _u8(img * (1 + (0.03 + 0.2 * s) * n)[..., None])


def poisson_noise(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    scale = 10 ** (1.5 - 1.3 * s)  # photons per grey level
    return _u8(rng.poisson(img.astype(np.float64) * scale / 16) * 16 / scale)


def blur(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    return _u8(ndimage.gaussian_filter(img.astype(np.float32), sigma=(0.6 + 2.4 * s, 0.6 + 2.4 * s, 0)))


def split_layers(img: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Approximate inverse of ``render.fuse``: CT grey and PET level in [0, 1]."""
    f = img.astype(np.float32) / 255.0
    ct = np.clip(f[..., 2] / (1 - alpha), 0, 1)  # the hot map has no blue below 0.75
    hot_r = np.clip((f[..., 0] - (1 - alpha) * ct) / alpha, 0, 1)
    hot_g = np.clip((f[..., 1] - (1 - alpha) * ct) / alpha, 0, 1)
    pet = np.where(hot_g > 0.01, 0.365 + hot_g * (0.746 - 0.365), hot_r * 0.365)
    return ct, pet


FAMILIES: dict[str, Degradation] = {
    "jpeg8": jpeg8,
    "jpeg12": jpeg12,
    "jpeg2000": jpeg2000,
    "impulse": impulse,
    "gaussian_noise": gaussian_noise,
    "speckle": speckle,
    "poisson_noise": poisson_noise,
    "blur": blur,
}


# The fault each family shows, as the cause head names it.
CAUSE_OF: dict[str, str] = {
    "jpeg8": "compression",
    "jpeg12": "compression",
    "jpeg2000": "compression",
    "impulse": "impulse",
    "gaussian_noise": "noise",
    "speckle": "noise",
    "poisson_noise": "noise",
    "blur": "blur",
}


def degrade(img: np.ndarray, family: str, strength: float, rng: np.random.Generator,
            region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Apply one family at ``strength`` in [0, 1], to the whole picture or one region of it."""
    fn = FAMILIES[family]
    if region is None:
        return fn(img, rng, strength)
    out = img.copy()
    out[region] = fn(np.ascontiguousarray(img[region]), rng, strength)
    return out
