"""History files -> prepared, remapped, split sequences (see dataset.py for the contract)."""

from model.data.dataset import PreparedDataset, Sequences, Split

__all__ = ["PreparedDataset", "Sequences", "Split"]
