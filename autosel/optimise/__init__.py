"""The combination search: selections, strategies, the Optuna study and the ask/tell driver."""

from autosel.optimise.strategies import STRATEGIES, check_strategy
from autosel.optimise.study import open_storage, quiet_optuna

__all__ = ["STRATEGIES", "check_strategy", "open_storage", "quiet_optuna"]
