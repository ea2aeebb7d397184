from .agca import AGCA
from .ensemble import MSIQAEnsemble
from .msiqa_net import GRID_STRIDE, PRESETS, MSIQANet, NetConfig, create_model, preset

__all__ = ["AGCA", "GRID_STRIDE", "PRESETS", "MSIQAEnsemble", "MSIQANet", "NetConfig", "create_model", "preset"]
