"""Settings shared by every process kind (CLI, trainer, worker, bootstrap).

One pydantic-settings base so that an environment variable means the same thing everywhere
(including docker-compose): ``DIFFLSREC_HOME``, ``DIFFLSREC_DEVICE``, ``DIFFLSREC_SEED`` ...
Process-specific settings (the worker's topics, the bootstrap schedule) subclass :class:`CommonSettings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: epochs without a better validation NDCG@10 before training stops (`train`, `benchmark`, `reproduce`;
#: the periodic `bootstrap` retraining keeps 5 and `demo` 2, to stay short). 20, not
#: 10 (the default until 2026-12-06): on ml-100k patience 10 stopped DiffLSRec on its mid-training plateau
#: (test NDCG@10 0.0842 -> 0.1004 over two seeds with 20) and cost HGN and GRU4Rec 0.003-0.004; on the
#: ML-1M 2,000-user subset it stopped SASRec-CE early on two of three seeds (README, early stopping)
DEFAULT_PATIENCE = 20


def default_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "difflsrec"


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` of a settings class: ``web_port`` -> ``DIFFLSREC_WEB_PORT``."""
    return CommonSettings.model_config["env_prefix"] + field.upper()


class CommonSettings(BaseSettings):
    """Paths, device and seed; every other settings class extends this one."""

    model_config = SettingsConfigDict(env_prefix="DIFFLSREC_", extra="ignore", validate_default=True)

    home: Path = Field(default_factory=default_home, description="root for datasets, caches, runs and the model registry")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto' uses CUDA when present")
    seed: int = 0
    log_level: str = "INFO"
    threads: int | None = Field(None, description="CPU threads for torch (None: torch's default); 1 is faster when other processes share the cores")

    @property
    def data_dir(self) -> Path:
        """Raw dataset files (fetched or copied by the user)."""
        return self.home / "data"

    @property
    def cache_dir(self) -> Path:
        """Prepared datasets, keyed by a hash of input + options."""
        return self.home / "prepared"

    @property
    def registry_dir(self) -> Path:
        """Versioned model artifacts and the LATEST pointer."""
        return self.home / "registry"


def apply_threads(threads: int | None) -> None:
    """Set torch's intra-op threads when asked (oversubscribed cores make spinning OpenMP threads slow)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def parse_device(device: str) -> "torch.device":  # noqa: F821 - torch imported lazily
    """``device`` as torch understands it, or a ValueError that says what is accepted."""
    import torch

    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


def resolve_device(device: str = "auto") -> "torch.device":  # noqa: F821 - torch imported lazily
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parsed = parse_device(device)
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch.cuda.is_available() is False (use 'auto' or 'cpu')")
    return parsed
