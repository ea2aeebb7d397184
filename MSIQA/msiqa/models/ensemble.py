"""MSIQAEnsemble: networks of one configuration, trained with different seeds, averaged.

Trained from scratch on 12 scenes, one network's ranking moves by up to 0.07 SROCC with the
seed alone; the mean of several seeds' outputs keeps what they agree on. Every output is the
members' mean: the score, the attention map (still a weight map in (0, 1), so the heatmap
means what it meant), the cell scores and the cause logits.
"""

from __future__ import annotations

import torch
from torch import nn

from .msiqa_net import MSIQANet, NetConfig, Output


class MSIQAEnsemble(nn.Module):
    """Behaves as one :class:`MSIQANet` (same ``config``, same :class:`Output`)."""

    def __init__(self, config: NetConfig, members: int):
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, not {members}")
        self.config = config
        self.members = nn.ModuleList(MSIQANet(config) for _ in range(members))

    @classmethod
    def of(cls, nets: list[MSIQANet]) -> "MSIQAEnsemble":
        """The ensemble of trained networks (copies of their weights)."""
        configs = [n.config for n in nets]
        if any(c != configs[0] for c in configs[1:]):
            raise ValueError("ensemble members must share one network configuration; "
                             f"got {len({str(c) for c in configs})} different ones")
        ensemble = cls(configs[0], len(nets))
        for member, net in zip(ensemble.members, nets):
            member.load_state_dict(net.state_dict())
        return ensemble

    def forward(self, x: torch.Tensor) -> Output:
        planes = self.members[0].input_planes(x)  # the members share the configuration that makes them
        outs = [m.read(planes) for m in self.members]
        causes = None if outs[0].cause is None else torch.stack([o.cause for o in outs]).mean(0)
        return Output(*(torch.stack(t).mean(0) for t in list(zip(*outs))[:3]), causes)


def members_of(net: MSIQANet | MSIQAEnsemble) -> list[MSIQANet]:
    """An ensemble's members, or the network itself: what has its own heads and its own map."""
    return list(net.members) if isinstance(net, MSIQAEnsemble) else [net]
