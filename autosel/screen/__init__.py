"""Screening: every candidate activation alone at every timestep, scored on the search split."""

from autosel.screen.sweep import SweepResult, run_sweep

__all__ = ["SweepResult", "run_sweep"]
