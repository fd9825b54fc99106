"""The option files of a config group that a user picks: every one but the options
`msl-ablate import` fills in (``released``: a released checkpoint's parts, with no twin and no
recipe; tests/e2e/test_import.py checks the configs the import composes)."""

from __future__ import annotations

from msl_ablate.config.compose import CONF_DIR

IMPORT_ONLY = "released"


def chosen_options(group: str) -> list[str]:
    """The names of ``conf/<group>/*.yaml`` a user chooses from, sorted."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if p.stem != IMPORT_ONLY)
