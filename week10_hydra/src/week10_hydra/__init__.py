"""week10_hydra (being built)."""
