"""Retraining: history -> training -> artifact -> atomic publication in the registry -> announcement."""
