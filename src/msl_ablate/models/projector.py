"""Projectors: map vision features ``(B, N, D_v)`` to LM embeddings ``(B, N, D_lm)``."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class MLPProjector(nn.Module):
    """``depth`` linear layers with an activation between them (depth 1 is LLaVA's linear).

    ``mlp2x_gelu`` is Linear(D_v, D_lm) -> GELU -> Linear(D_lm, D_lm), as LLaVA-1.5 and Mipha.

    Args:
        in_dim: Vision feature width ``D_v`` (filled in by ``assemble``).
        out_dim: LM embedding width ``D_lm`` (filled in by ``assemble``).
        depth: Number of linear layers, >= 1.
        act: Activation name, one of ``ACTIVATIONS``.
        name: The option name (unused here; kept so the config maps 1:1 to the class).

    Raises:
        ValueError: ``depth < 1`` or an unknown activation.
    """

    def __init__(
        self, in_dim: int, out_dim: int, depth: int = 2, act: str = "gelu", name: str = ""
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"projector.depth must be >= 1, got {depth}")
        if act not in ACTIVATIONS:
            raise ValueError(f"projector.act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(depth - 1):
            layers += [ACTIVATIONS[act](), nn.Linear(out_dim, out_dim)]
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.layers(image_features)  # (B, N, D_v) -> (B, N, D_lm)
