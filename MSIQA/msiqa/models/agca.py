"""Adaptive graph channel attention (AGCA).

Channel attention in which the channels, squeezed to a few hidden "nodes", talk to each
other through a graph before they gate the input: the adjacency is the identity
(each node keeps itself) scaled by a data-dependent affinity, plus a learned adjacency
that starts near zero, so the block begins as plain squeeze-and-excitation and learns
channel interactions only where they help.
"""

from __future__ import annotations

import torch
from torch import nn


class AGCA(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        nodes = max(4, channels // reduction)
        self.squeeze = nn.Conv2d(channels, nodes, 1, bias=False)
        # Per-sample affinity of each node, a 1x1 conv over the node axis.
        self.affinity = nn.Conv1d(1, 1, 1, bias=False)
        self.register_buffer("eye", torch.eye(nodes), persistent=False)
        self.adjacency = nn.Parameter(torch.full((nodes, nodes), 1e-6))
        self.node_update = nn.Conv1d(1, 1, 1, bias=False)
        self.excite = nn.Conv2d(nodes, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.squeeze(x.mean(dim=(2, 3), keepdim=True))  # B, N, 1, 1
        y = y.flatten(1).unsqueeze(1)  # B, 1, N: the node features as a sequence
        data_adj = torch.softmax(self.affinity(y), dim=-1)  # B, 1, N
        adj = self.eye * data_adj.transpose(1, 2) + self.adjacency  # B, N, N
        y = torch.relu(self.node_update(torch.bmm(y, adj)))  # B, 1, N
        gate = torch.sigmoid(self.excite(y.transpose(1, 2).unsqueeze(-1)))  # B, C, 1, 1
        return x * gate
