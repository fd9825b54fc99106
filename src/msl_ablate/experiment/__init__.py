"""Orchestration: the stage loop of one run, where its files live, and the checks before it.

``run.run`` trains (or reuses) every stage of the strategy, evaluates the result, and records it
in MLflow and the results store; ``stages.run_stages`` is shared by ``train`` and ``evaluate``.
Kept free of imports so that ``experiment.checks`` stays light.
"""
