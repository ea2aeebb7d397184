"""SUV bookkeeping of the simulated FDG study: the injection, the uptake time, the patient."""

from __future__ import annotations

# F-18 FDG, 60 min uptake; the sample's patient weighs PATIENT_WEIGHT_KG.
F18_HALF_LIFE_S = 6586.2
PATIENT_WEIGHT_KG = 75.0
INJECTED_DOSE_BQ = 370.0e6
UPTAKE_TIME_S = 3600.0
DECAY_CORRECTED_DOSE_BQ = INJECTED_DOSE_BQ * 2.0 ** (-UPTAKE_TIME_S / F18_HALF_LIFE_S)


def suv_factor(weight_kg: float = PATIENT_WEIGHT_KG) -> float:
    """SUV per Bq/ml: SUV = concentration[Bq/ml] * weight[g] / decay-corrected dose[Bq]."""
    return weight_kg * 1000.0 / DECAY_CORRECTED_DOSE_BQ
