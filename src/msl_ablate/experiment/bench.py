"""``msl-ablate bench``: the harness's training step against the loop a user would write.

The reference is transformers' ``LlavaForConditionalGeneration`` with the harness's weights
(``models/llava_reference.py``), a shuffled ``DataLoader`` over the same records and a plain
AdamW step. The harness is the real stage: ``fit_stage`` through Lightning, its data module,
feature cache, steps in parts, logging to an MLflow store. Both run in one process, in
alternating blocks of steps, so that whatever else the machine does hits both alike: a
callback at the end of every harness step runs the reference's block when one is due.

Each setting is one stage on equal-length records (the most common length of its split) or on
the split as it is (variable lengths: the instruction mix has short answers, long turns and
text-only records, as LLaVA's 665k). A harness step is timed from the end of the step before
(or of the reference's block) to its own end: data loading, forward, backward, optimizer,
logging and callbacks. The first block of each is warm-up, not counted.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from msl_ablate.data.collate import VLMCollator
from msl_ablate.data.datamodule import resolve_data_root, split_image_dir, split_path
from msl_ablate.data.dataset import LlavaDataset
from msl_ablate.data.records import load_records
from msl_ablate.experiment.layout import StageLayout
from msl_ablate.experiment.stages import fit_stage
from msl_ablate.models.assemble import build_vlm, max_sequence_length, resolved_checkpoints
from msl_ablate.models.llava_reference import llava_reference, parameter_names, reference_problem
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.tracking.mlflow_run import StageMLFlowLogger, Tracker
from msl_ablate.training.strategy import apply_stages_through
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

LENGTHS = ("equal", "variable")
CONTENDERS = ("transformers loop", "harness")


@dataclass
class Tally:
    """One contender's timed steps in one setting."""

    seconds: list[float] = field(default_factory=list)
    samples: int = 0
    tokens: int = 0  # real positions (text and image tokens), padding not counted
    computed: float = 0.0  # positions computed, padding included
    peak_bytes: int = 0  # CUDA only

    def add(self, seconds: float, batch: dict[str, Any], padding: float) -> None:
        real = int(batch["attention_mask"].sum())
        self.seconds.append(seconds)
        self.samples += int(batch["input_ids"].shape[0])
        self.tokens += real
        self.computed += real / (1.0 - padding)

    def row(self) -> dict[str, Any]:
        total = sum(self.seconds)
        return {
            "steps": len(self.seconds),
            "step_ms": round(1e3 * statistics.median(self.seconds), 1),
            "samples_per_s": round(self.samples / total, 2),
            "tokens_per_s": round(self.tokens / total),
            "padding": round(1.0 - self.tokens / self.computed, 3),
            "peak_mem_mb": round(self.peak_bytes / 2**20) if self.peak_bytes else None,
        }


def pick_records(records: list[dict], lengths: list[int], kind: str, at_least: int) -> list[dict]:
    """The records of a setting: all of them (``variable``), or those of the most common
    length, widened to the nearest lengths until there are ``at_least`` (``equal``)."""
    if kind == "variable":
        return records
    counts = Counter(lengths)
    mode = counts.most_common(1)[0][0]
    by_distance = sorted(counts, key=lambda n: (abs(n - mode), n))
    kept: set[int] = set()
    for n in by_distance:
        kept.add(n)
        if sum(counts[k] for k in kept) >= at_least:
            break
    return [r for r, n in zip(records, lengths, strict=True) if n in kept]


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class ReferenceLoop:
    """The plain loop: shuffled batches, forward, backward, AdamW, zero the gradients.

    Args:
        model: The transformers reference (trainability set).
        dataset: The setting's records, as the harness tokenizes them (images as pixels).
        batch_size: Samples per step.
        lrs: ``{parameter: learning rate}`` (the harness's per-component rates).
        pad_token_id: The tokenizer's pad id.
        seed: Seeds the shuffling.
        num_workers: Loader processes, as the harness's (``data.num_workers``).
        autocast: Run forward in bf16 autocast on CUDA, as the harness's ``bf16-mixed``.
    """

    def __init__(self, model: torch.nn.Module, dataset: LlavaDataset, batch_size: int,
                 lrs: dict[torch.nn.Parameter, float], pad_token_id: int, seed: int,
                 num_workers: int = 0, autocast: bool = False):  # fmt: skip
        self.model = model
        self.autocast = autocast
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                 collate_fn=VLMCollator(pad_token_id), num_workers=num_workers,
                                 persistent_workers=num_workers > 0,
                                 generator=torch.Generator().manual_seed(seed))  # fmt: skip
        groups: dict[float, list] = {}
        for param, lr in lrs.items():
            groups.setdefault(lr, []).append(param)
        self.optimizer = torch.optim.AdamW([{"params": p, "lr": lr} for lr, p in groups.items()])
        self.batches: Iterator[dict[str, Any]] = iter(())
        model.train()

    def _next_batch(self) -> dict[str, Any]:
        batch = next(self.batches, None)
        if batch is None:  # a new epoch
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return batch

    def step(self) -> tuple[float, dict[str, Any]]:
        """One timed step: ``(seconds, batch)``."""
        start = time.perf_counter()
        batch = self._next_batch()
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items() if k != "ids"}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.model(**inputs).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize()
        return time.perf_counter() - start, batch


class Interleave(L.Callback):
    """Times the harness's steps and runs a block of reference steps after every ``block`` of
    them (see the module docstring).

    Args:
        reference: The reference loop.
        block: Steps per block of each contender.
        tallies: ``{contender: Tally}``, filled in.
    """

    def __init__(self, reference: ReferenceLoop, block: int, tallies: dict[str, Tally]):
        self.reference = reference
        self.block = block
        self.tallies = tallies
        self.last = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:  # fmt: skip
        synchronize()
        seconds = time.perf_counter() - self.last
        step = trainer.global_step
        counted = step > self.block  # the first block of each contender warms up
        if counted:
            padding = float(trainer.callback_metrics.get("train/padding", 0.0))
            self.tallies["harness"].add(seconds, batch, padding)
        if step % self.block == 0:
            self._peak("harness", counted)
            for _ in range(self.block):
                seconds, ref_batch = self.reference.step()
                if counted:
                    mask = ref_batch["attention_mask"]
                    padding = 1.0 - float(mask.sum()) / mask.numel()
                    self.tallies["transformers loop"].add(seconds, ref_batch, padding)
            self._peak("transformers loop", counted)
        self.last = time.perf_counter()

    def _peak(self, contender: str, counted: bool) -> None:
        if not torch.cuda.is_available():
            return
        if counted:
            tally = self.tallies[contender]
            tally.peak_bytes = max(tally.peak_bytes, torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()


def bench_setting(cfg: DictConfig, stage_name: str, kind: str, steps: int, block: int,
                  work_dir: Path, tracker: Tracker) -> dict[str, Any]:  # fmt: skip
    """Time both contenders on one stage and one kind of lengths.

    Returns:
        ``{"stage", "lengths", "records", "first_loss": {contender: loss}, "rows": [...]}``.
    """
    L.seed_everything(cfg.seed, verbose=False)
    vlm = build_vlm(cfg)
    groups = apply_stages_through(vlm, cfg.strategy.stages, stage_name)
    stage = cfg.strategy.stages[stage_name]
    max_length = max_sequence_length(cfg, vlm)
    root = resolve_data_root(cfg.data, cfg.paths.data_dir)
    image_dir = split_image_dir(cfg.data, root, stage.split)
    records = load_records(split_path(cfg.data, root, stage.split), image_dir)

    def dataset(recs: list[dict], keep_tokens: bool = True) -> LlavaDataset:
        return LlavaDataset(recs, image_dir, vlm.lm.tokenizer, vlm.vision.image_transform,
                            vlm.num_image_tokens, max_length, keep_tokens=keep_tokens)  # fmt: skip

    picked = pick_records(records, dataset(records).token_lengths(), kind, stage.batch_size)
    subset = work_dir / f"{stage_name}-{kind}.json"
    subset.write_text(json.dumps(picked), encoding="utf-8")

    problem = reference_problem(vlm)
    if problem is not None:
        raise ValueError(f"the bench compares with transformers' LLaVA, which cannot hold this "
                         f"model: {problem}")  # fmt: skip
    tower = get_class(cfg.vision.model_class).from_pretrained(resolved_checkpoints(cfg)["vision"])
    # On the device the trainer will use, in its precision.
    on_gpu = str(cfg.trainer.accelerator) in ("gpu", "cuda") and torch.cuda.is_available()
    reference = llava_reference(vlm, tower).to("cuda" if on_gpu else "cpu")
    mapped = dict(reference.named_parameters())
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    ours = dict(vlm.named_parameters())
    lrs = {mapped[theirs]: lr_of[id(ours[name])]
           for name, theirs in parameter_names(vlm).items() if ours[name].requires_grad}  # fmt: skip
    loop = ReferenceLoop(
        reference,
        dataset(picked, keep_tokens=False),  # tokenized on every read, as LLaVA's lazy dataset
        min(stage.batch_size, len(picked)),
        lrs,
        vlm.lm.tokenizer.pad_token_id,
        cfg.seed,
        cfg.data.num_workers,
        autocast=on_gpu and str(cfg.trainer.precision).startswith("bf16"),
    )
    first = _first_losses(vlm, reference, loop)

    tallies = {name: Tally() for name in CONTENDERS}
    run_cfg = cfg.copy()
    with open_dict(run_cfg):
        run_cfg.data.files[stage.split] = str(subset)  # absolute: read as is, images from root
        run_cfg.checkpoint.every_minutes = 1e9  # a resume checkpoint would be timed too
        run_cfg.checkpoint.every_steps = None
        node = run_cfg.strategy.stages[stage_name]
        node.max_steps = (steps // block + 1) * block  # the first block warms up
        node.global_batch_size = None  # one optimizer step per batch, as the reference
    run_id = tracker.client.create_run(
        tracker.experiment_id, run_name=f"bench {stage_name} {kind}"
    ).info.run_id
    logger = StageMLFlowLogger(tracking_uri=tracker.tracking_uri, run_id=run_id,
                               log_model=False, prefix=stage_name)  # fmt: skip
    layout = StageLayout.of(work_dir / "stages", f"{stage_name}-{kind}")
    fit_stage(run_cfg, vlm, run_cfg.strategy.stages[stage_name], groups, layout, max_length,
              logger, callbacks=[Interleave(loop, block, tallies)])  # fmt: skip
    baseline = tallies["transformers loop"].row()
    rows = []
    for name in CONTENDERS:
        row = {"stage": stage_name, "lengths": kind, "contender": name, **tallies[name].row()}
        row["ratio"] = round(row["samples_per_s"] / baseline["samples_per_s"], 3)
        rows.append(row)
    return {"stage": stage_name, "lengths": kind, "records": len(picked), "first_loss": first,
            "rows": rows}  # fmt: skip


def _first_losses(vlm: VisionLanguageModel, reference: torch.nn.Module,
                  loop: ReferenceLoop) -> dict[str, float]:  # fmt: skip
    """Both models' loss on one batch, dropout off: equal when they are the same model."""
    batch = next(iter(loop.loader))
    device = next(reference.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.items() if k != "ids"}
    vlm.to(device)  # where the trainer will put it anyway
    training = {m: m.training for m in vlm.modules()}
    vlm.eval(), reference.eval()
    with torch.no_grad():
        losses = {"harness": float(vlm(**inputs).loss),
                  "transformers loop": float(reference(**inputs).loss)}  # fmt: skip
    for module, mode in training.items():
        module.train(mode)
    reference.train()
    return losses


def run_bench(cfg: DictConfig, stages: list[str], kinds: list[str], steps: int, block: int,
              out_dir: Path) -> list[dict[str, Any]]:  # fmt: skip
    """Every (stage, lengths) setting; writes ``bench.json`` and ``bench.md`` to ``out_dir``."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = []
    with tempfile.TemporaryDirectory(prefix="msl-bench-") as tmp:
        work = Path(tmp)
        tracking = OmegaConf.create(
            {"tracking_uri": f"sqlite:///{work}/mlflow.db", "experiment": "bench",
             "artifact_location": str(work / "artifacts")}
        )  # fmt: skip
        tracker = Tracker(tracking)  # a throwaway store: the MLflow writes are timed, not kept
        for stage_name in stages:
            for kind in kinds:
                log.info("bench: stage %s, %s lengths, %d steps each", stage_name, kind, steps)
                settings.append(bench_setting(cfg, stage_name, kind, steps, block, work, tracker))
    result = {"device": device_name(), "threads": torch.get_num_threads(), "steps": steps,
              "block": block, "settings": settings}  # fmt: skip
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out_dir / "bench.md").write_text(markdown(result), encoding="utf-8")
    return settings


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({torch.get_num_threads()} threads)"


def markdown(result: dict[str, Any]) -> str:
    """The bench table: one row per setting and contender."""
    import pandas as pd

    rows = [row for s in result["settings"] for row in s["rows"]]
    table = pd.DataFrame(rows)
    losses = "; ".join(
        f"{s['stage']}/{s['lengths']}: "
        + ", ".join(f"{k} {v:.5f}" for k, v in s["first_loss"].items())
        for s in result["settings"]
    )
    return (
        f"# msl-ablate bench\n\n{result['device']}; {result['steps']} timed steps per contender "
        f"and setting, in alternating blocks of {result['block']}; ratio: samples/s over the "
        f"transformers loop's.\n\n{table.to_markdown(index=False)}\n\nFirst-batch losses (same weights, "
        f"dropout off): {losses}\n"
    )
