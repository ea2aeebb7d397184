"""The tissues of the phantom: CT number, attenuation at 70 and 511 keV, FDG uptake."""

from __future__ import annotations

from dataclasses import dataclass

MU_WATER_70KEV = 0.0193  # 1/mm, water at the ~70 keV effective energy of a 120 kVp beam


@dataclass(frozen=True)
class Tissue:
    label: int
    name: str
    hu: float  # CT number
    mu511: float  # 1/mm at 511 keV
    suv: float  # FDG uptake (standardised uptake value)

    @property
    def mu70(self) -> float:
        """1/mm at the CT effective energy, consistent with the CT number."""
        return MU_WATER_70KEV * (1.0 + self.hu / 1000.0)


TISSUE_LIST = (
    Tissue(0, "air", -1000.0, 0.0, 0.0),
    Tissue(1, "table_shell", 300.0, 0.0120, 0.0),
    Tissue(2, "table_foam", -880.0, 0.0012, 0.0),
    Tissue(3, "skin", 30.0, 0.0097, 0.8),
    Tissue(4, "fat", -100.0, 0.0090, 0.35),
    Tissue(5, "muscle", 45.0, 0.0099, 0.8),
    Tissue(6, "lung", -850.0, 0.0018, 0.35),
    Tissue(7, "soft_tissue", 35.0, 0.0097, 1.0),
    Tissue(8, "myocardium", 45.0, 0.0101, 6.0),
    Tissue(9, "blood", 45.0, 0.0101, 1.8),
    Tissue(10, "liver", 58.0, 0.0102, 2.5),
    Tissue(11, "spleen", 48.0, 0.0101, 2.0),
    Tissue(12, "cancellous_bone", 250.0, 0.0112, 1.4),
    Tissue(13, "cortical_bone", 1100.0, 0.0165, 0.3),
    Tissue(14, "airway", -1000.0, 0.0, 0.0),
    Tissue(15, "disc", 90.0, 0.0102, 0.9),
    Tissue(16, "csf", 15.0, 0.0096, 0.6),
    Tissue(17, "lesion", 40.0, 0.0099, 14.0),
    Tissue(18, "stomach_wall", 40.0, 0.0099, 1.8),
    Tissue(19, "gastric_content", 15.0, 0.0097, 0.4),
    Tissue(20, "kidney", 32.0, 0.0099, 2.5),
    Tissue(21, "urine", 10.0, 0.0096, 15.0),  # FDG excreted into the renal pelvis
)
TISSUES: dict[str, Tissue] = {t.name: t for t in TISSUE_LIST}
