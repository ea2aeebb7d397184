from .agca import AGCA
from .msiqa_net import GRID_STRIDE, PRESETS, MSIQANet, NetConfig, create_model, preset

__all__ = ["AGCA", "GRID_STRIDE", "PRESETS", "MSIQANet", "NetConfig", "create_model", "preset"]
