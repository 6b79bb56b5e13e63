"""Item-style embedding tables whose row 0 is padding."""

from __future__ import annotations

import torch
from torch import nn


def normal_padded_(*embeddings: nn.Embedding, std: float) -> None:
    """Draw each table's rows from N(0, std) and zero row 0 (padding / no item), in the order given.

    ``padding_idx`` only keeps row 0 out of the gradient; ``nn.init.normal_`` overwrites it, so without the
    zeroing padded positions would carry a random vector into every sum and attention over a window."""
    for emb in embeddings:
        nn.init.normal_(emb.weight, std=std)
        with torch.no_grad():
            emb.weight[0].zero_()
