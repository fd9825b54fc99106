"""One run of the stage graph: reuse or train each stage, run the missing evaluations, record them.

Under the training key's lock (one process per trained model at a time):

1. nothing to do (every stage finished, every evaluation recorded): say what was skipped and
   return, building no model and creating no MLflow run or store row;
2. else open the training's MLflow run (new, or its own unfinished one, reopened), bring the
   model to the end of the strategy (``stages.run_stages``: stages found by key are reused);
3. run each evaluation not done yet, record each one not yet in MLflow as a nested run, and add
   its rows to the results store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.components import components, zoo_members
from msl_ablate.evaluation.run_benchmarks import benchmark_specs, prompt_limit
from msl_ablate.experiment.evaluations import (
    Evaluation,
    close_evaluation,
    open_evaluation,
    plan_evaluations,
)
from msl_ablate.experiment.evaluations import run_evaluation as evaluate_one
from msl_ablate.experiment.keys import keys_of, stage_inputs
from msl_ablate.experiment.layout import RUN_CONFIG, StageLayout, TrainingLayout
from msl_ablate.experiment.stages import run_stages
from msl_ablate.results import store
from msl_ablate.tracking.mlflow_run import (
    EVALUATION,
    STUDY_TAG,
    TRAINING,
    Tracker,
    flatten,
    git_sha,
    studies_of,
    study_axis_tag,
    study_tag,
)
from msl_ablate.utils.files import write_text_atomic
from msl_ablate.utils.locks import hold, is_held
from msl_ablate.utils.logging import get_logger, is_rank_zero

log = get_logger(__name__)

AXIS_GROUPS = ("vision", "lm", "projector", "strategy", "data")
# The config groups that define a trained model: the training run's params.
MODEL_GROUPS = ("vision", "lm", "projector", "strategy", "data", "trainer")


def stop_status(err: BaseException) -> str:
    """The MLflow status of a run stopped by ``err``: KILLED when it was stopped from outside
    (Ctrl-C; submitit's exit after requeueing a preempted or timed-out SLURM job), else FAILED."""
    return "KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED"


def heldout_report(metrics: dict[str, float], prefix: str) -> str:
    """Exact match and the majority baseline per question type, from the held-out metrics."""
    model = {k.removeprefix(f"{prefix}/exact_match"): v for k, v in metrics.items()
             if k.startswith(f"{prefix}/exact_match")}  # fmt: skip
    rows = [f"{'question type':<14} {'model':>7} {'majority':>9}"]
    for suffix in sorted(model, key=lambda s: (s == "", s)):
        base = metrics.get(f"{prefix}/majority_baseline{suffix}", float("nan"))
        rows.append(f"{suffix.lstrip('/') or 'overall':<14} {model[suffix]:>7.1f} {base:>9.1f}")
    return "\n".join(rows)


def _log_heldout(cfg: DictConfig, metrics: dict[str, float]) -> None:
    if cfg.eval.split is not None:
        prefix = f"{list(cfg.strategy.stages)[-1]}/{cfg.eval.split}"
        report = heldout_report(metrics, prefix)
        log.info("Held-out %s split, exact match %%:\n%s", cfg.eval.split, report)


def provenance(cfg: DictConfig) -> dict[str, str]:
    """Where the weights come from: ``weights.<part>`` (checkpoint ids), ``twin.<part>`` and,
    when pretrained zoo members stand in, ``zoo.<part>`` (their recipes, ``conf/zoo``)."""
    tags = {}
    for part in ("vision", "lm"):
        specs = [spec for _, spec in components(cfg[part], part)]
        tags[f"weights.{part}"] = "+".join(str(s.checkpoint or "tiny-twin") for s in specs)
        twins = {bool(cfg.offline_twins or s.checkpoint is None) for s in specs}
        tags[f"twin.{part}"] = "mixed" if len(twins) > 1 else str(twins.pop()).lower()
        members = zoo_members(cfg[part], part, cfg.offline_twins)
        if members:
            tags[f"zoo.{part}"] = "+".join(members)
    return tags


def study_tags(cfg: DictConfig) -> dict[str, str]:
    """That the training belongs to ``cfg.study``, and its axis values as the study names them."""
    return {
        study_tag(cfg.study): "true",
        **{study_axis_tag(cfg.study, g): cfg[g].name for g in AXIS_GROUPS},
    }


def training_tags(cfg: DictConfig, keys: dict[str, str]) -> dict[str, str]:
    return {
        STUDY_TAG: cfg.study,
        **study_tags(cfg),
        "seed": str(cfg.seed),
        "git_sha": git_sha(),
        "outputs": str(cfg.paths.output_dir),
        "offline_twins": str(cfg.offline_twins).lower(),
        **{f"axis.{g}": cfg[g].name for g in AXIS_GROUPS},
        **{f"stage_key.{s}": k for s, k in keys.items()},
        **provenance(cfg),
    }


def run_name(cfg: DictConfig) -> str:
    return (
        "-".join(cfg[g].name for g in ("vision", "lm", "projector", "strategy")) + f"-s{cfg.seed}"
    )


def close_stale_runs(tracker: Tracker, output_dir: str, own_key: str) -> None:
    """Mark KILLED every RUNNING run of these outputs whose training lock no process holds."""
    for kind in (TRAINING, EVALUATION):
        for found in tracker.search(kind, "attributes.status = 'RUNNING'"):
            tags = found.data.tags
            key = tags.get("training_key")
            if tags.get("outputs") != output_dir or key is None or key == own_key:
                continue
            if not is_held(TrainingLayout.of(output_dir, key).lock):
                reason = f"its process ({tags.get('host')}:{tags.get('pid')}) is gone"
                log.warning("MLflow %s run %s was RUNNING but %s: KILLED", kind, found.info.run_id,
                            reason)  # fmt: skip
                tracker.finish(found.info.run_id, "KILLED", reason)


@dataclass(frozen=True)
class Plan:
    """What one launch asks of the stage graph: its keys, files and evaluations.

    Attributes:
        cfg: The root config.
        train: Fit unfinished stages (False: ``msl-ablate evaluate``, all must be finished).
        inputs: ``{stage: what its key hashes}``.
        keys: ``{stage: stage key}``.
        training: The trained model's files (its key is the last stage's).
        evaluations: The evaluations asked.
    """

    cfg: DictConfig
    train: bool
    inputs: dict[str, dict[str, Any]]
    keys: dict[str, str]
    training: TrainingLayout
    evaluations: list[Evaluation]

    @classmethod
    def of(cls, cfg: DictConfig, train: bool) -> Plan:
        inputs = stage_inputs(cfg)
        keys = keys_of(inputs)
        training = TrainingLayout.of(cfg.paths.output_dir, list(keys.values())[-1])
        evaluations = plan_evaluations(cfg, benchmark_specs(cfg), training)
        return cls(cfg, train, inputs, keys, training, evaluations)

    def unfinished_stages(self) -> list[str]:
        return [n for n, k in self.keys.items()
                if not StageLayout.of(self.cfg.paths.output_dir, k).finished]  # fmt: skip

    def result(self, run_id: str | None) -> dict[str, Any]:
        """An empty result of this launch (see ``run``)."""
        return {"training_key": self.training.key, "stage_keys": self.keys,
                "mlflow_run_id": run_id, "metrics": {}, "stages": {}, "evaluations": {},
                "skipped": False, "store_rows": 0}  # fmt: skip


def run(cfg: DictConfig, train: bool = True) -> dict[str, Any]:
    """Reuse or train every stage, run the missing evaluations, record what is new.

    Args:
        cfg: The composed, checked root config (absolute ``paths``).
        train: False (``msl-ablate evaluate``): every stage must be finished.

    Returns:
        ``{"training_key", "stage_keys", "mlflow_run_id", "metrics", "stages", "evaluations",
        "skipped", "store_rows"}``; ``stages``: name -> ``trained`` or ``reused``;
        ``evaluations``: benchmark -> ``{"key", "protocol", "new", "run_id"}``.
    """
    plan = Plan.of(cfg, train)
    if not is_rank_zero():  # a DDP rank > 0: train with rank zero; it alone records and evaluates
        result = plan.result(None)
        _bring_to_end(plan, None, None, True, result)
        return result
    tracker = Tracker(cfg.tracking) if cfg.tracking.enabled else None
    with hold(plan.training.lock, f"training {plan.training.key}"):
        if tracker is not None:
            close_stale_runs(tracker, str(cfg.paths.output_dir), plan.training.key)
        return _run_locked(plan, tracker)


def _run_locked(plan: Plan, tracker: Tracker | None) -> dict[str, Any]:
    cfg, training, evaluations = plan.cfg, plan.training, plan.evaluations
    unfinished = plan.unfinished_stages()
    if unfinished and not plan.train:
        raise FileNotFoundError(
            f"training {training.key} is not finished: stage(s) {', '.join(unfinished)} have no "
            f"finished artifact under {cfg.paths.output_dir}/stages/ (run `msl-ablate train` "
            f"with the run's config to finish it)"
        )
    found = None if tracker is None else tracker.find(TRAINING, training.key)
    recorded = {} if tracker is None else tracker.finished_evaluations(training.key)
    # A model trained for another study (a cell two studies share) joins this one: its tags
    # (with the axis values as this study names them), then its recorded evaluations' store
    # rows again, now with rows for this study too.
    joining = {} if found is None else study_tags(cfg)
    joins = any(found.data.tags.get(k) != v for k, v in joining.items())
    if joins:
        tracker.set_tags(found.info.run_id, joining)
        log.info("Training %s (%s) was trained for %s: it joins study %s", training.key,
                 run_name(cfg), ", ".join(studies_of(found.data.tags)), cfg.study)  # fmt: skip
    pending = {e.key for e in evaluations if e.record() is None}
    unlogged = [e for e in evaluations if tracker is not None and e.key not in recorded]
    training_recorded = tracker is None or (found is not None and found.info.status == "FINISHED")
    result = plan.result(None if found is None else found.info.run_id)
    if not unfinished and training_recorded and not pending and not unlogged:
        for e in evaluations:
            result["metrics"] |= e.record()["metrics"]
            if joins:
                result["store_rows"] += _store(cfg, tracker, recorded[e.key].info.run_id,
                                               found.info.run_id)  # fmt: skip
        result["skipped"] = True
        log.info(
            "Nothing to do for training %s (%s): stages %s finished, %d evaluations recorded%s; "
            "skipped%s",
            training.key, run_name(cfg), ", ".join(plan.keys), len(evaluations),
            "" if found is None else f" (MLflow run {found.info.run_id})",
            f" ({result['store_rows']} store rows added for study {cfg.study})" if joins else "",
        )  # fmt: skip
        _log_heldout(cfg, result["metrics"])
        return result

    if plan.train:  # `evaluate` reads it; its own eval overrides never replace the training's
        write_text_atomic(training.config, OmegaConf.to_yaml(cfg, resolve=True))
    run_id = None
    if tracker is not None:
        params = flatten(
            {
                g: OmegaConf.to_container(cfg[g], resolve=True, enum_to_str=True)
                for g in MODEL_GROUPS
            }
            | {"seed": cfg.seed, "offline_twins": cfg.offline_twins}
        )
        run_id, status = tracker.open(TRAINING, training.key, run_name(cfg),
                                      training_tags(cfg, plan.keys), params)  # fmt: skip
        training_recorded = status == "FINISHED" and not unfinished
        if status == "FINISHED" and unfinished:  # its stage files were deleted: redo them
            tracker.client.update_run(run_id, status="RUNNING")
        if status is None:
            tracker.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), RUN_CONFIG)
        result["mlflow_run_id"] = run_id

    vlm, limit = None, 0
    if unfinished or pending:
        vlm, limit = _bring_to_end(plan, tracker, run_id, training_recorded, result)
    elif tracker is not None and not training_recorded:
        tracker.finish(run_id, "FINISHED")

    last_stage = list(cfg.strategy.stages)[-1]
    tags = {"training_key": training.key, "outputs": str(cfg.paths.output_dir),
            "study": cfg.study}  # fmt: skip
    for e in evaluations:
        record = e.record()
        info = {"key": e.key, "protocol": e.protocol_key, "new": e.key in pending, "run_id": None}
        if tracker is not None and e.key not in recorded:
            info["run_id"] = open_evaluation(tracker, e, last_stage, run_id, tags)
        if record is None:
            try:
                record = evaluate_one(e, vlm, last_stage, cfg.eval.batch_size, limit)
            except BaseException as err:
                if info["run_id"] is not None:
                    tracker.finish(info["run_id"], stop_status(err), f"{type(err).__name__}: {err}")
                raise
        if info["run_id"] is not None:
            close_evaluation(tracker, info["run_id"], e, record)
            result["store_rows"] += _store(cfg, tracker, info["run_id"], run_id)
        elif joins:
            result["store_rows"] += _store(cfg, tracker, recorded[e.key].info.run_id, run_id)
        result["evaluations"][e.spec.name] = info
        result["metrics"] |= record["metrics"]
    _log_heldout(cfg, result["metrics"])
    if result["store_rows"]:
        path = _store_path(cfg)
        log.info("Results store %s:\n%s", path, store.summary(store.load(path)))
    return result


def _store_path(cfg: DictConfig) -> Path:
    return Path(cfg.paths.results_dir) / store.STORE_FILE


def _store(cfg: DictConfig, tracker: Tracker, evaluation_run: str, training_run: str) -> int:
    """Add an evaluation's rows to the store (one per study of its training); returns how many."""
    client = tracker.client
    rows = store.rows_from_runs(client.get_run(evaluation_run), client.get_run(training_run))
    store.upsert(_store_path(cfg), rows, tracker=tracker)
    return len(rows)


def _bring_to_end(
    plan: Plan,
    tracker: Tracker | None,
    run_id: str | None,
    training_recorded: bool,
    result: dict[str, Any],
) -> tuple[Any, int]:
    """Build the model and run the stage loop; close the training run. Returns (vlm, limit)."""
    import lightning as L
    import torch

    from msl_ablate.models.assemble import build_vlm, max_sequence_length

    cfg = plan.cfg
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    L.seed_everything(cfg.seed, workers=True)
    vlm = build_vlm(cfg)
    max_length = max_sequence_length(cfg, vlm)
    try:
        vlm, outcomes = run_stages(
            cfg, vlm, plan.keys, plan.inputs, max_length, tracker, run_id, plan.train
        )
    except BaseException as err:
        if tracker is not None and not training_recorded:
            tracker.finish(run_id, stop_status(err), f"{type(err).__name__}: {err}")
        raise
    result["stages"] = {o.name: "trained" if o.trained else "reused" for o in outcomes}
    if tracker is not None and not training_recorded:
        tracker.set_tags(run_id, {"stage": "done"})
        tracker.finish(run_id, "FINISHED")
    return vlm.to(evaluation_device(cfg)), prompt_limit(cfg, vlm)


def evaluation_device(cfg: DictConfig) -> str:
    """Where the trained model answers the benchmarks: the GPU the trainer uses (Lightning moves
    the model back to the CPU when a fit ends, and a reused stage is loaded there), else the CPU.
    """
    import torch

    on_gpu = str(cfg.trainer.accelerator) in ("gpu", "cuda", "auto")
    return "cuda" if on_gpu and torch.cuda.is_available() else "cpu"
