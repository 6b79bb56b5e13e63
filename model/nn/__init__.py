"""DiffLSRec networks: encoders, noise schedule, denoiser, and the model."""
