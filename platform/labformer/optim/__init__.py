"""Optimisation procedures beyond a plain optimiser step (sharpness-aware minimisation)."""
