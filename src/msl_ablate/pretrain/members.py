"""The zoo's members: the recipes under ``conf/zoo/<kind>/``, built into the zoo, and their cards.

A recipe is a twin builder's config (``_target_`` and its arguments, ``name`` = file stem). The
options of ``conf/vision`` and ``conf/lm`` pull one in as their ``twin`` (a defaults entry
``/zoo/<kind>/<recipe>@twin``), so ``offline_twins=true`` loads the pretrained member; this
module lists and builds them all at once (``msl-ablate zoo build``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from msl_ablate.config.compose import compose, config_dir
from msl_ablate.models.zoo import capped, resolve_checkpoint, twin_dir
from msl_ablate.pretrain.cards import Card, read_card

KINDS = ("vision", "lm")


@dataclass(frozen=True)
class Member:
    """One zoo recipe: its kind (``vision``/``lm``), name and resolved arguments."""

    kind: str
    name: str
    recipe: dict[str, Any]


def recipe_names(kind: str) -> list[str]:
    """The recipe files of one kind, sorted (``conf/zoo/<kind>/*.yaml`` stems)."""
    return sorted(p.stem for p in (config_dir() / "zoo" / kind).glob("*.yaml"))


def load_member(kind: str, name: str) -> Member:
    """Compose one recipe (its defaults, e.g. a variant's parent, included) and resolve it."""
    # A primary config in a group folder composes under that group's package (zoo.<kind>).
    cfg = compose([], config_name=f"zoo/{kind}/{name}").zoo[kind]
    recipe = OmegaConf.to_container(cfg, resolve=True)
    if recipe.get("name") != name:
        raise ValueError(
            f"conf/zoo/{kind}/{name}.yaml: `name` must equal the file stem {name!r}, "
            f"got {recipe.get('name')!r}"
        )
    return Member(kind, name, recipe)


def members(only: list[str] | None = None) -> list[Member]:
    """Every recipe (vision first, then LMs), or those named in ``only``.

    Raises:
        ValueError: A name in ``only`` that no recipe has (the valid names are listed).
    """
    names = {kind: recipe_names(kind) for kind in KINDS}
    known = [n for kind in KINDS for n in names[kind]]
    unknown = sorted(set(only or []) - set(known))
    if unknown:
        raise ValueError(f"no zoo recipe named {unknown}; recipes: {', '.join(known)}")
    return [load_member(kind, n) for kind in KINDS for n in names[kind] if not only or n in only]


def member_dir(member: Member, zoo_dir: str | Path, max_steps: int | None = None) -> Path:
    """Where a member is (or will be) built."""
    zoo = Path(zoo_dir).expanduser()
    return twin_dir(zoo, member.name, capped(member.recipe, max_steps))


def build_member(member: Member, zoo_dir: str | Path, max_steps: int | None = None) -> Path:
    """Build a member unless its folder exists (the same path ``offline_twins`` loads)."""
    spec = {"name": member.name, "checkpoint": None, "twin": member.recipe}
    return Path(resolve_checkpoint(spec, True, zoo_dir, max_steps))


def card_row(member: Member, card: Card | None) -> dict[str, Any]:
    """One line of the zoo table: the member, its budget and its scores against random init."""
    row: dict[str, Any] = {"member": member.name, "kind": member.kind}
    row["objective"] = member.recipe.get("objective", "-")
    if card is None:
        return row | {"built": "no"}
    scores = "; ".join(
        f"{s.name} {s.value:g} ({s.against} {s.random_init:g}){'' if s.learned else ' NOT LEARNED'}"
        for s in card.scores
    )
    return row | {
        "built": "yes",
        "steps": str(card.steps),  # a string: a column with unbuilt members would print 450.0
        "seconds": card.build_seconds,
        "loss": f"{card.losses[0]:.3f} -> {card.losses[-1]:.3f}" if card.losses else "-",
        "scores": scores,
    }


def zoo_table(only: list[str] | None, zoo_dir: str | Path, max_steps: int | None) -> list[dict]:
    """The table rows of the members (built or not) in ``zoo_dir``."""
    return [card_row(m, read_card(member_dir(m, zoo_dir, max_steps))) for m in members(only)]
