"""``msl-ablate bench --shape``: the harness's training step on a real-sized model with random
weights, for tokens/s and MFU on a GPU.

The side-by-side bench (``bench.py``) needs checkpoints, so offline it runs on the tiny twins. What
a step costs at the paper's scale needs only the architecture: a shape (``conf/shape/<name>.yaml``)
names the tower's and the LM's config and model classes with the checkpoints' dimensions; both
are built in memory on the device with random weights, joined by the harness's own classes
(``HFVisionEncoder`` cut at the feature layer, ``MLPProjector``, ``CausalLM``), trained as the
strategy's stage says (default: the finetune stage, LM and projector trained, tower frozen)
through ``VLMLitModule`` and a Lightning trainer at the trainer config's precision.

Batches are random token ids: one image (its tokens in place of the placeholder) then
``text_tokens`` of text whose last ``answer_tokens`` are trained; every sample has the same
length (no padding). The tower runs on random pixels in every step (no feature cache).
FLOPs per step are ``training/flops.py``'s estimate (attention scores left out); MFU divides the
achieved FLOP/s by the device's peak at the trainer's precision as Lightning knows it.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from lightning.fabric.utilities.throughput import get_available_flops
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerFast

from msl_ablate.config.compose import config_dir
from msl_ablate.data.tokens import IGNORE_INDEX, IMAGE_TOKEN
from msl_ablate.experiment.bench import device_name, synchronize
from msl_ablate.experiment.run import evaluation_device
from msl_ablate.models.activations import fuse_activation
from msl_ablate.models.lm import CausalLM
from msl_ablate.models.projector import MLPProjector
from msl_ablate.models.vision.hf import HFVisionEncoder
from msl_ablate.models.vision.transforms import ImageTransform
from msl_ablate.models.vlm import VisionLanguageModel
from msl_ablate.training.flops import StepSizes, step_flops
from msl_ablate.training.lit_module import VLMLitModule
from msl_ablate.training.strategy import apply_stage
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

SHAPES_DIR = "shape"


def load_shape(name: str) -> DictConfig:
    """``conf/shape/<name>.yaml``.

    Raises:
        ValueError: No such shape (naming those there are).
    """
    folder = Path(config_dir()) / SHAPES_DIR
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ValueError(f"--shape {name!r}: no {path} (shapes: {known})")
    return OmegaConf.load(path)


def _placeholder_tokenizer() -> PreTrainedTokenizerFast:
    """The few tokens a random-weight step needs (the image placeholder, padding, EOS); the
    text's ids are drawn from the LM's whole vocabulary."""
    vocab = {IMAGE_TOKEN: 0, "<pad>": 1, "<eos>": 2, "<unk>": 3}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
        additional_special_tokens=[IMAGE_TOKEN],
    )  # fmt: skip


def build_shaped_vlm(shape: DictConfig, layers: int | None = None) -> VisionLanguageModel:
    """The shape's model with random weights, built on the current default device.

    Args:
        shape: A loaded shape.
        layers: Blocks of the tower and layers of the LM (None: the shape's own), to try the
            step where the whole model does not fit (a CPU).
    """
    if layers is not None and layers < 2:
        raise ValueError(f"--layers {layers}: at least 2 (the tower is read after its block "
                         f"{shape.vision.feature_layer} from the end)")  # fmt: skip
    vision_args = OmegaConf.to_container(shape.vision.args)
    lm_args = OmegaConf.to_container(shape.lm.args)
    if layers is not None:
        vision_args["num_hidden_layers"] = lm_args["num_hidden_layers"] = layers
    vision_config = get_class(shape.vision.config_class)(**vision_args)
    tower = get_class(shape.vision.model_class)(vision_config)
    size = vision_config.image_size
    vision = HFVisionEncoder(tower, size, shape.vision.feature_layer, drop_cls=False,
                             transform=ImageTransform(size, [0.5] * 3, [0.5] * 3, "resize"),
                             name="shape")  # fmt: skip
    lm_config = get_class(shape.lm.config_class)(**lm_args)
    fuse_activation(lm_config)  # as the harness builds every LM
    lm = CausalLM(
        get_class(shape.lm.model_class)(lm_config), _placeholder_tokenizer(), name="shape"
    )
    projector = MLPProjector(vision.embed_dim, lm.embed_dim, depth=2, act="gelu")
    return VisionLanguageModel(vision, projector, lm)


class RandomSamples(Dataset):
    """Samples of one length: the image's placeholder tokens, then random text ids."""

    def __init__(self, vlm: VisionLanguageModel, text_tokens: int, answer_tokens: int, n: int):
        self.image_tokens = vlm.num_image_tokens
        self.image_token_id = vlm.image_token_id
        self.vocab = vlm.lm.model.get_input_embeddings().num_embeddings
        self.size = vlm.vision.image_size
        self.text_tokens, self.answer_tokens, self.n = text_tokens, answer_tokens, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        text = torch.randint(8, self.vocab, (self.text_tokens,), generator=generator)
        image = torch.full((self.image_tokens,), self.image_token_id)
        input_ids = torch.cat([image, text])  # (L,)
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        labels[-self.answer_tokens :] = input_ids[-self.answer_tokens :]
        return {"input_ids": input_ids, "labels": labels,
                "attention_mask": torch.ones_like(input_ids),
                "pixel_values": torch.randn(3, self.size, self.size,
                                            generator=generator)}  # fmt: skip


class StepTimer(L.Callback):
    """Wall time of every step (the device synchronised), from the end of the step before."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.last = 0.0

    def _now(self) -> float:
        synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not self.last:
            self.last = self._now()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = self._now()
        self.seconds.append(now - self.last)
        self.last = now


def run_shaped(
    cfg: DictConfig,
    shape_name: str | DictConfig,
    stage_name: str,
    steps: int,
    warmup: int,
    batch_size: int | None = None,
    layers: int | None = None,
) -> dict[str, Any]:
    """Time ``steps`` steps (after ``warmup``) of ``stage_name`` on the shape's model.

    Args:
        cfg: The composed config: its strategy gives the stage, its trainer the device and
            precision.
        shape_name: ``conf/shape/<name>.yaml``, or a loaded shape (its name: ``name``).
        stage_name: A stage of ``cfg.strategy``.
        steps: Timed steps.
        warmup: Steps run first and not timed.
        batch_size: Samples per step (None: the stage's ``batch_size``).
        layers: Depth of both parts (None: the shape's).

    Returns:
        The numbers of the step (also logged).
    """
    shape = load_shape(shape_name) if isinstance(shape_name, str) else shape_name
    shape_name = shape_name if isinstance(shape_name, str) else shape.get("name", "?")
    stage = cfg.strategy.stages[stage_name]
    device = torch.device(evaluation_device(cfg))  # the trainer's GPU where there is one
    on_gpu = device.type == "cuda"
    L.seed_everything(cfg.seed, verbose=False)
    with device:  # initialised where it trains: a 3B model's init on the CPU takes minutes
        vlm = build_shaped_vlm(shape, layers)
    groups = apply_stage(vlm, stage)
    batch = batch_size or stage.batch_size
    samples = RandomSamples(vlm, shape.text_tokens, shape.answer_tokens, (steps + warmup) * batch)
    loader = DataLoader(samples, batch_size=batch, num_workers=2 if on_gpu else 0,
                        pin_memory=on_gpu)  # fmt: skip
    timer = StepTimer()
    precision = str(cfg.trainer.precision)
    trainer = L.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1, precision=precision,
                        max_steps=steps + warmup, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])  # fmt: skip
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(VLMLitModule(vlm, groups, stage), train_dataloaders=loader)
    timed = timer.seconds[warmup:]
    step_s = statistics.median(timed)
    one = next(iter(DataLoader(samples, batch_size=batch)))
    length = one["input_ids"].shape[1]
    flops = step_flops(StepSizes.of(vlm), one, one["input_ids"].numel(), vlm.num_image_tokens)
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
    peak = get_available_flops(device, dtype) if on_gpu else None
    result = {
        "shape": shape_name, "stage": stage_name, "device": device_name(),
        "precision": precision, "layers": layers, "batch_size": batch, "sequence": length,
        "image_tokens": vlm.num_image_tokens, "steps": len(timed),
        "parameters_b": round(sum(p.numel() for p in vlm.parameters()) / 1e9, 3),
        "trained_b": round(sum(p.numel() for p in vlm.parameters() if p.requires_grad) / 1e9, 3),
        "step_ms": round(1e3 * step_s, 1),
        "samples_per_s": round(batch / step_s, 2),
        "tokens_per_s": round(batch * length / step_s),
        "tflops_per_step": round(flops / 1e12, 2),
        "achieved_tflops": round(flops / step_s / 1e12, 2),
        "peak_tflops": round(peak / 1e12, 1) if peak else None,
        "mfu": round(flops / step_s / peak, 3) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if on_gpu else None,
    }  # fmt: skip
    log.info("shaped step: %s", result)
    return result


def markdown(result: dict[str, Any]) -> str:
    """The shaped step as a two-column table."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    return f"# msl-ablate bench --shape {result['shape']}\n\n| | |\n|---|---|\n{rows}\n"
