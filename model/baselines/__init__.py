"""Baselines, one module each; every module registers one Recommender (see model/registry.py)."""
