"""``msl-ablate plan SWEEP [overrides]``: what a sweep will run and how long it will take.

``SWEEP`` names a sweep of ``sweeps/`` (``fig5_optim``) or is omitted with ``--config-dir`` /
``--config-name`` as for ``train -m``; overrides (``preset=paper``, ``seed=0,1``) apply as they
would there. Prints every stage the sweep needs once (a stage shared by several jobs is trained
once), which are already finished, the evaluations still to run, and the time each will take:
measured from finished stages and evaluations of the same shape under ``paths.output_dir``, else
estimated from FLOPs at a stated device speed. Nothing is trained or written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from msl_ablate.config.compose import job_labels, sweeps_dir
from msl_ablate.experiment.checks import checked_sweep
from msl_ablate.utils.errors import ConfigError, DataError

EXIT_BAD_INPUT = 2


@dataclass
class Line:
    """One thing to run (a stage or an evaluation) and its estimate."""

    what: str
    key: str
    jobs: int
    work: str
    state: str
    seconds: float | None
    source: str


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _plus(total: float | None, seconds: float | None) -> float | None:
    return None if total is None or seconds is None else total + seconds


def _steps_left(state: str, steps: int) -> int:
    """Steps still to train of a stage in ``state`` (finished, ``step k/N`` or todo)."""
    if state == "finished":
        return 0
    if state.startswith("step "):
        return steps - int(state.split()[1].split("/")[0])
    return steps


def _n_questions(spec) -> int | None:
    from msl_ablate.evaluation.benchmark import prompt_records

    try:
        return len(prompt_records(spec)[0])
    except (OSError, DataError):  # real benchmark files not on this machine
        return None


def plan_lines(configs: list, peak_tflops: float | None, utilisation: float | None):
    """The stages and evaluations of a sweep's jobs, each once, with estimates.

    Returns:
        ``(stage lines, evaluation lines, per-job seconds of new work, device speed, states)``.
    """
    from msl_ablate.experiment import estimate as est
    from msl_ablate.experiment.run import Plan
    from msl_ablate.experiment.status import stage_use, training_state

    states = [training_state(cfg, None) for cfg in configs]
    use = stage_use(states)
    speed = est.device_speed(configs[0], peak_tflops, utilisation)
    estimator = est.Estimator(speed)
    stages: dict[str, Line] = {}
    evals: dict[str, Line] = {}
    per_job: list[float | None] = []
    for cfg, state in zip(configs, states, strict=True):
        plan = Plan.of(cfg, train=True)
        job: float | None = 0.0
        for stage in state.stages:
            if stage.layout.key in stages:  # shared: counted with the first job that needs it
                continue
            steps = cfg.strategy.stages[stage.name].max_steps
            left = _steps_left(stage.state, steps)
            guess = estimator.stage(cfg, stage.name, plan.inputs[stage.name], left)
            stages[stage.layout.key] = Line(
                stage.name, stage.layout.key, use[stage.layout.key], f"{left}/{steps} steps",
                stage.state, guess.seconds, guess.source,
            )  # fmt: skip
            job = _plus(job, guess.seconds)
        model = plan.inputs[list(plan.inputs)[-1]]
        for evaluation in plan.evaluations:
            if evaluation.record() is not None or evaluation.key in evals:
                continue
            n = _n_questions(evaluation.spec)
            guess = estimator.evaluation(cfg, model, evaluation, n)
            evals[evaluation.key] = Line(
                evaluation.spec.name, evaluation.key, 1, f"{'?' if n is None else n} questions",
                "todo", guess.seconds, guess.source,
            )  # fmt: skip
            job = _plus(job, guess.seconds)
        per_job.append(job)
    return list(stages.values()), list(evals.values()), per_job, speed, states


def render(jobs: list[list[str]], configs: list, peak: float | None, use: float | None) -> str:
    stages, evals, per_job, speed, states = plan_lines(configs, peak, use)
    cfg = configs[0]
    todo = [s for s in stages if s.state != "finished"]
    known = [s.seconds for s in [*todo, *evals] if s.seconds is not None]
    total = sum(known)
    device = "GPU" if str(cfg.trainer.accelerator) in ("gpu", "cuda") else "machine"
    done = sum(s.state == "done" for s in states)
    lines = [
        f"plan {cfg.study}: {len(configs)} job(s), {done} done; outputs {cfg.paths.output_dir}",
        f"device speed for FLOPs estimates: {speed.text}",
        "",
        f"stages ({len(stages)} distinct, {len(todo)} to train; a shared stage is trained once):",
        f"  {'stage':<9} {'key':<13} {'jobs':>4}  {'work':<16} {'state':<12} {'time':>7}  from",
    ]
    for s in stages:
        lines.append(f"  {s.what:<9} {s.key:<13} {s.jobs:>4}  {s.work:<16} {s.state:<12} "
                     f"{duration(s.seconds):>7}  {s.source}")  # fmt: skip
    eval_known = [e.seconds for e in evals if e.seconds is not None]
    n_measured = sum(e.source.startswith("measured") for e in evals)
    sources = [f"{n_measured} measured"] if n_measured else []
    if len(eval_known) > n_measured:
        sources.append(f"{len(eval_known) - n_measured} from FLOPs")
    lines += [
        "",
        f"evaluations to run: {len(evals)} ({duration(sum(eval_known))}"
        + (f", {len(evals) - len(eval_known)} unknown" if len(eval_known) < len(evals) else "")
        + (f"; {', '.join(sources)}" if sources else "")
        + ")",
        "",
        "jobs:",
    ]
    for i, (shown, seconds, state) in enumerate(
        zip(job_labels(jobs), per_job, states, strict=True)
    ):
        lines.append(f"  [{i}] {shown}: {state.state}, {duration(seconds)} of new work")
    unknown = len(todo) + len(evals) - len(known)
    hours = total * speed.devices / 3600
    lines += [
        "",
        f"total: {len(todo)} stage(s) and {len(evals)} evaluation(s), {duration(total)} run one "
        f"after another ({hours:.2f} {device}-hours)"
        + (f"; {unknown} item(s) without an estimate" if unknown else ""),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print a sweep's plan: its stages and evaluations, what is done, how long the rest takes."""
    parser = argparse.ArgumentParser(prog="msl-ablate plan", description=main.__doc__)
    parser.add_argument("args", nargs="*", help="SWEEP (a sweep of sweeps/), then overrides")
    parser.add_argument("--config-dir", help="folder of the primary config (default sweeps/)")
    parser.add_argument("--config-name", help="primary config, as for train -m")
    parser.add_argument("-m", "--multirun", action="store_true", help="accepted, as for train")
    parser.add_argument("--peak-tflops", type=float, help="device peak (GPU default A100 312)")
    parser.add_argument("--utilisation", type=float, help="fraction of peak sustained (MFU)")
    args = parser.parse_args(argv)
    overrides = list(args.args)
    name, folder = args.config_name, args.config_dir
    if name is None:
        if not overrides or "=" in overrides[0]:
            parser.error("name a sweep of sweeps/ (e.g. fig5_optim) or pass --config-name")
        name, folder = overrides.pop(0), folder or str(sweeps_dir())
    from msl_ablate.utils.logging import setup_console_logging

    setup_console_logging()
    if folder and not (Path(folder) / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in Path(folder).glob("*.yaml"))
        print(f"msl-ablate plan: no sweep {name!r} in {folder} (have: {', '.join(known)})",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    try:
        jobs, configs = checked_sweep(overrides, name, folder)
        print(render(jobs, configs, args.peak_tflops, args.utilisation))
    except (ConfigError, DataError, FileNotFoundError) as err:
        print(f"msl-ablate plan: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0
