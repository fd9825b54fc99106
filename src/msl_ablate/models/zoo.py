"""The offline tiny zoo: tiny twins of real architectures and a locally trained tokenizer.

A component config names a real ``checkpoint`` (hub id or folder) and a ``twin``: the same
transformers classes, shrunk. With ``offline_twins=true`` (or ``checkpoint: null``) the twin
is built once into ``paths.zoo_dir`` and loaded through the very same ``from_pretrained``
path as the real checkpoint. The switch is explicit; nothing falls back silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from msl_ablate.config.components import components
from msl_ablate.data.tokens import IMAGE_TOKEN
from msl_ablate.models.activations import fuse_activation
from msl_ablate.models.chat_templates import TINY_CHAT_TEMPLATE
from msl_ablate.utils.files import build_dir_atomically, stable_hash
from msl_ablate.utils.locks import hold
from msl_ablate.utils.logging import get_logger

log = get_logger(__name__)

# Version 3: trained on the instruction mix's texts too (data/instructions.py). Version 4: answers
# start their line, as the chat template renders them, so they are whole tokens ("yes", not
# "y" + "es"). Its corpus is drawn from the world and the mix, so their versions are part of its
# identity too (`tokenizer_recipe`): a fresh machine and a warm cache train the same tokenizer or
# different folders.
TOKENIZER_PARAMS = {"vocab_size": 512, "corpus_seed": 0, "corpus_scenes": 3000, "version": 4}


def tokenizer_recipe() -> dict[str, Any]:
    """What the zoo tokenizer is trained from: its parameters, the world's and the mix's versions."""
    from msl_ablate.data.instructions import MIX_VERSION
    from msl_ablate.data.world import WORLD_VERSION

    return {**TOKENIZER_PARAMS, "world": WORLD_VERSION, "mix": MIX_VERSION}


SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|end|>",
    "<pad>",
    IMAGE_TOKEN,
]


def ensure_tokenizer(zoo_dir: str | Path) -> Path:
    """Train (once) a byte-level BPE tokenizer on the synthetic world's corpus.

    Returns:
        The folder of a ``PreTrainedTokenizerFast`` with a chat template and ``<image>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from msl_ablate.data.instructions import corpus

    def build(out: Path) -> None:
        log.info("Training the tiny zoo tokenizer (%s)", tokenizer_recipe())
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=TOKENIZER_PARAMS["vocab_size"],
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        texts = corpus(TOKENIZER_PARAMS["corpus_seed"], TOKENIZER_PARAMS["corpus_scenes"])
        tok.train_from_iterator(texts, trainer=trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            eos_token="<|end|>",
            pad_token="<pad>",
            unk_token=None,
            additional_special_tokens=[IMAGE_TOKEN],
        )
        fast.chat_template = TINY_CHAT_TEMPLATE
        fast.save_pretrained(out)

    return build_dir_atomically(
        Path(zoo_dir) / f"tokenizer-{stable_hash(tokenizer_recipe(), 8)}", build
    )


def new_lm_twin(zoo_dir: Path, model_class: str, config: dict, seed: int = 0):
    """A randomly initialised transformers causal LM sized by ``config``, with the zoo tokenizer.

    Args:
        zoo_dir: The zoo, where the shared tokenizer is built.
        model_class: Dotted transformers class, e.g. ``transformers.PhiForCausalLM``.
        config: Keyword arguments of the config class; vocabulary and special ids come from
            the tokenizer.
        seed: Initialisation seed.

    Returns:
        ``(model, tokenizer)``.
    """
    from transformers import AutoTokenizer

    cls = get_class(model_class)
    tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer(zoo_dir))
    ids = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.eos_token_id,
    }
    torch.manual_seed(seed)
    model_config = cls.config_class(**{**config, **ids})
    original = fuse_activation(model_config)  # the same function, faster to pretrain
    model = cls(model_config)
    if original is not None:
        model.config.hidden_act = original
    return model, tokenizer


def save_hf_lm_twin(
    out_dir: Path, zoo_dir: Path, model_class: str, config: dict, seed: int = 0
) -> None:
    """Save a randomly initialised causal LM (``new_lm_twin``) with the zoo tokenizer."""
    model, tokenizer = new_lm_twin(zoo_dir, model_class, config, seed)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


# Every twin is built on this many intra-op threads, whatever the run's num_threads: the thread
# count changes the order of float sums, so a member built on 1 thread differs from one built on
# 2 under the same key (measured: tiny_siglip_64's weights by up to 4e-3, and the demo's table
# with them). Two suit the tiny recipes on any machine.
BUILD_THREADS = 2

# Bump when code under pretrain/ changes what a recipe builds (objectives, corpora, tuning):
# every member then gets a new folder instead of a stale one being reused.
RECIPES_VERSION = 2


def zoo_inputs() -> dict[str, Any]:
    """What every zoo member depends on besides its own recipe: the tokenizer, the world and the
    version of the pretraining code."""
    from msl_ablate.data.world import WORLD_VERSION

    return {"tokenizer": tokenizer_recipe(), "world": WORLD_VERSION, "recipes": RECIPES_VERSION}


def capped(twin: dict[str, Any], max_steps: int | None) -> dict[str, Any]:
    """A twin recipe with every ``steps`` (its own and its parents') capped at ``max_steps``.

    Tests and quick checks build the zoo's recipes with a few steps instead of their budget;
    the capped recipe is a different recipe (another folder, another stage key), never a
    silently short copy of the real one.
    """
    if max_steps is None:
        return twin
    out = {}
    for key, value in twin.items():
        if isinstance(value, dict):
            value = capped(value, max_steps)
        elif key == "steps" and isinstance(value, int):
            value = min(value, max_steps)
        out[key] = value
    return out


def twin_dir(zoo_dir: str | Path, name: str, twin: dict[str, Any]) -> Path:
    """Where a twin lives: named after its recipe (``twin.name``; else the option ``name``).

    The hash covers the recipe, the zoo tokenizer and the world version: a changed recipe, a
    retrained tokenizer or a new world is a new folder. Options that share a recipe share it.
    """
    label = twin.get("name", name)
    return Path(zoo_dir) / f"{label}-{stable_hash({'twin': twin, **zoo_inputs()}, 8)}"


def resolve_checkpoint(
    spec: DictConfig | dict,
    offline_twins: bool,
    zoo_dir: str | Path,
    max_steps: int | None = None,
) -> str:
    """The path or hub id that ``from_pretrained`` should load for a component.

    Args:
        spec: A vision or LM config with ``name``, ``checkpoint`` and ``twin``.
        offline_twins: Use the tiny twin instead of the real checkpoint.
        zoo_dir: Where twins are built.
        max_steps: Cap on a pretrained twin's steps (``zoo.max_steps``; None: its budget).

    Returns:
        The real checkpoint, or the twin's folder (built on first use).

    Raises:
        ValueError: A twin is needed but the option defines none.
    """
    spec = OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec
    if spec.get("checkpoint") and not offline_twins:
        return spec["checkpoint"]
    twin = spec.get("twin")
    if not twin:
        raise ValueError(
            f"option {spec['name']!r} has no twin to build offline; give it a `twin:` section "
            f"or set a real `checkpoint:` and offline_twins=false"
        )
    zoo_dir = Path(zoo_dir).expanduser()
    twin = capped(twin, max_steps)
    dest = twin_dir(zoo_dir, spec["name"], twin)
    if not dest.exists():
        log.info("Building tiny twin %s in %s", spec["name"], dest)

    def build(out: Path) -> None:
        # Twin builders seed their own init; the caller's RNG stream must not depend on
        # whether a twin was already cached (or runs would differ between first and later).
        threads = torch.get_num_threads()
        torch.set_num_threads(BUILD_THREADS)
        try:
            with torch.random.fork_rng(devices=[]):
                instantiate(twin, out_dir=out, zoo_dir=zoo_dir, _convert_="all")
        finally:
            torch.set_num_threads(threads)

    # One builder per member: a second process (another job of a sweep) waits, then loads it.
    with hold(dest.with_name(f".{dest.name}.lock"), f"zoo member {dest.name}"):
        return str(build_dir_atomically(dest, build))


def builder_kwargs(
    spec: DictConfig,
    offline_twins: bool,
    zoo_dir: str | Path,
    max_steps: int | None = None,
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An option's builder arguments: each component's checkpoint resolved, its ``twin`` dropped.

    Args:
        spec: ``cfg.vision`` or ``cfg.lm`` (a fused vision option resolves each encoder).
        offline_twins: Use the tiny twins instead of the real checkpoints.
        zoo_dir: Where twins are built.
        max_steps: Cap on pretrained twins' steps (``zoo.max_steps``).
        drop: Keys of each component that its builder does not take.

    Returns:
        The option as a plain dict, ready for ``hydra.utils.instantiate``.
    """
    kwargs = OmegaConf.to_container(spec, resolve=True)
    for _, component in components(kwargs, ""):
        component["checkpoint"] = resolve_checkpoint(component, offline_twins, zoo_dir, max_steps)
        # shard_blocks: how training shards the model (training/sharding.py), not a build argument.
        for key in ("twin", "shard_blocks", *drop):
            component.pop(key, None)
    return kwargs
