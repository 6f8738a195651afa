"""The combination search: selections, strategies, the Optuna study and the ask/tell driver."""
