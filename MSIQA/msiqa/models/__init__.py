from .agca import AGCA
from .ensemble import MSIQAEnsemble, members_of
from .inference import for_inference
from .msiqa_net import GRID_STRIDE, PRESETS, MSIQANet, NetConfig, create_model, preset

__all__ = [
    "AGCA", "GRID_STRIDE", "PRESETS", "MSIQAEnsemble", "MSIQANet", "NetConfig", "create_model", "for_inference",
    "members_of", "preset",
]
