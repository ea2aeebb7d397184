"""SUV bookkeeping of the simulated FDG study: the injection, the uptake time, the patient."""

from __future__ import annotations

# SUV bookkeeping: F-18 FDG, 60 min uptake.
F18_HALF_LIFE_S = 6586.2
PATIENT_WEIGHT_KG = 75.0
INJECTED_DOSE_BQ = 370.0e6
UPTAKE_TIME_S = 3600.0
DECAY_CORRECTED_DOSE_BQ = INJECTED_DOSE_BQ * 2.0 ** (-UPTAKE_TIME_S / F18_HALF_LIFE_S)


def suv_factor() -> float:
    """SUV per Bq/ml: SUV = concentration[Bq/ml] * weight[g] / decay-corrected dose[Bq]."""
    return PATIENT_WEIGHT_KG * 1000.0 / DECAY_CORRECTED_DOSE_BQ
