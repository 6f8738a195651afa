"""Where the work runs: preflight checks, the plan, model-replica workers and their pools."""
