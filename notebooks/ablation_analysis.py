# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation analysis: one study of the results store
#
# Loads the rows of **one** study (a sweep of `sweeps/`, at one scale) from the results store,
# and shows each comparison as a table and a figure with its uncertainty: the mean over seeds
# with a 95% t interval, paired-bootstrap differences over questions from a reference cell,
# main effects for factorial studies, and the paper's findings tested on the measured cells.
# Other studies in the store are never mixed in.
#
# Run a sweep first (`make fig5`, or `msl-ablate train -m --config-dir sweeps --config-name
# fig5_optim`). Pick the study below, or set `MSL_ABLATE_STUDY` / `MSL_ABLATE_ROOT` (the folder
# holding `results/` and `mlruns/`) before starting Jupyter. This file is paired with
# `ablation_analysis.ipynb` by jupytext (`jupytext --sync notebooks/ablation_analysis.py`).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display

from msl_ablate.commands.report import sweeps_dir
from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.results import store
from msl_ablate.results.figures import draw
from msl_ablate.results.findings import check_finding, findings_markdown, ordering_agreement
from msl_ablate.results.report import difference_text, measured_table
from msl_ablate.results.study import load_study
from msl_ablate.results.units import unit_table

STUDY = os.environ.get("MSL_ABLATE_STUDY", "fig5_optim")  # a sweep of sweeps/
OVERRIDES = os.environ.get("MSL_ABLATE_OVERRIDES", "").split()  # e.g. preset=paper
ROOT = Path(os.environ.get("MSL_ABLATE_ROOT", Path.cwd().parent if Path.cwd().name == "notebooks"
                           else Path.cwd()))  # fmt: skip
RESAMPLES = int(os.environ.get("MSL_ABLATE_RESAMPLES", "2000"))

cfg = compose([f"paths.root={ROOT}", *OVERRIDES], STUDY, sweeps_dir())
absolutize_paths(cfg)
report = cfg.report
df = store.load(Path(cfg.paths.results_dir) / store.STORE_FILE)
study = load_study(df, cfg.study, report.axis, order=list(report.paper_order))
units = lambda run_id: unit_table(cfg.tracking.tracking_uri, run_id)  # noqa: E731
aliases = {k: str(v) for k, v in cfg.resolutions.items()} if report.axis == "image_size" else {}
print(f"{report.title}: study {study.name}, cells {study.cells} ({study.axis}), "
      f"seeds {study.seeds()}")  # fmt: skip

# %% [markdown]
# ## The table: mean over seeds ± half the 95% interval, chance for reference

# %%
display(Markdown(measured_table(study).to_markdown()))

# %% [markdown]
# ## The figure

# %%
figure = draw(study, report.plot, report.title, Path(cfg.paths.results_dir) / "notebook" /
              study.name / "figure")[0]  # fmt: skip
display(Image(filename=str(figure)))
plt.close("all")

# %% [markdown]
# ## Differences from the reference cell
# Paired bootstrap over the questions both cells answered; `*`: the interval excludes zero, a
# difference larger than its uncertainty.

# %%
reference = aliases.get(report.reference, report.reference) if report.reference else study.cells[0]
diffs = study.differences(reference, units, n_resamples=RESAMPLES)
display(Markdown(diffs.map(difference_text).to_markdown()))

# %% [markdown]
# ## Reading the effects
# Which differences are larger than their uncertainty, per benchmark, and the paper's findings.

# %%
clear = [(cell, column, d) for cell, row in diffs.iterrows() for column, d in row.items()
         if d.excludes_zero]  # fmt: skip
if not clear:
    print(f"No cell differs from {reference} beyond its 95% interval on any benchmark.")
for cell, column, d in clear:
    word = "better" if d.estimate > 0 else "worse"
    print(f"{cell} is {word} than {reference} on {column}: {d.estimate:+.1f} "
          f"[{d.low:+.1f}, {d.high:+.1f}]")  # fmt: skip
verdicts = [check_finding(study, f.claim, f.test, f.cells, f.benchmarks, units, aliases,
                          n_resamples=RESAMPLES) for f in report.findings]  # fmt: skip
ordering = ordering_agreement(study, report.paper_order) if report.paper_order else None
display(Markdown(findings_markdown(verdicts, ordering)))
