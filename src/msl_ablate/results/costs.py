"""What each cell of a study cost to train: the stages' throughput, from their training runs.

Every stage logs ``<stage>/cost/<name>`` to its training run when it ends
(``training.cost.StageCost``: train_s, samples_per_sec, tokens_per_sec, step_s, and on CUDA
peak_memory_gb); a stage another run trained was copied in with its curves. The table is the
mean over a cell's seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from msl_ablate.results.study import Study

# Loads one training run's cost metrics (``training_costs`` bound to a URI).
CostLoader = Callable[[str], dict[str, float]]
SHOWN = {"tokens_per_sec": "tokens/s", "samples_per_sec": "samples/s", "train_s": "train s",
         "peak_memory_gb": "peak GB"}  # fmt: skip


def training_costs(tracking_uri: str, run_id: str) -> dict[str, float]:
    """``{"<stage>/<name>": value}`` of a training run's cost metrics."""
    from mlflow import MlflowClient

    metrics = MlflowClient(tracking_uri).get_run(run_id).data.metrics
    return {name.replace("/cost/", "/"): value for name, value in metrics.items()
            if "/cost/" in name}  # fmt: skip


def cost_table(study: Study, costs: CostLoader) -> pd.DataFrame:
    """Cell x ``<stage> <quantity>``: the mean over the cell's seeds (empty if none logged)."""
    trainings = study.values[["cell", "seed", "training_run_id"]].dropna().drop_duplicates()
    rows = []
    for cell, seed, run_id in trainings.itertuples(index=False):
        for name, value in costs(run_id).items():
            stage, _, quantity = name.partition("/")
            if quantity in SHOWN:
                rows.append({"cell": cell, "seed": seed, "column": f"{stage} {SHOWN[quantity]}",
                             "value": value})  # fmt: skip
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index="cell", columns="column", values="value", aggfunc="mean")
    order = {label: i for i, label in enumerate(SHOWN.values())}
    # Stages by name (align, finetune), then the quantities in SHOWN's order.
    columns = sorted(table.columns, key=lambda c: (c.split(" ", 1)[0], order[c.split(" ", 1)[1]]))
    table = table.reindex(index=[c for c in study.cells if c in table.index], columns=columns)
    table.index.name = study.axis
    return table
