"""``msl-ablate data check [--split a,b] [--show N] [--no-tokens] [overrides]``.

Reads every record of the data's splits (default: all of ``data.files``), as training would:
counts records (with an image / text-only, turns), opens every image's header, names every
malformed record, missing, misnamed or unreadable image and duplicate id, and tokenizes every
record with the chosen LM's tokenizer and chat template (token-length percentiles, how many
exceed ``data.max_length``), filling the token cache that training then reads. Exit status 1
when a split has errors (training refuses to start on them unless ``data.on_error=skip``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msl_ablate.config.compose import absolutize_paths, compose
from msl_ablate.utils.errors import ConfigError, DataError
from msl_ablate.utils.logging import setup_console_logging


def main(argv: list[str] | None = None) -> int:
    """Check a dataset's files before training on them."""
    parser = argparse.ArgumentParser(prog="msl-ablate data", description=main.__doc__)
    parser.add_argument("action", choices=["check"])
    parser.add_argument("--split", type=lambda s: [x for x in s.split(",") if x], default=None,
                        help="splits of data.files to check (default: all)")  # fmt: skip
    parser.add_argument("--show", type=int, default=10, help="problems listed per kind")
    parser.add_argument("--no-tokens", action="store_true",
                        help="skip tokenization (no LM needed; no length percentiles)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="config overrides (data=..., lm=...)")
    args = parser.parse_intermixed_args(argv)
    setup_console_logging()
    try:
        cfg = compose(args.overrides)
        absolutize_paths(cfg)
    except ConfigError as err:
        print(f"msl-ablate data: {err}", file=sys.stderr)
        return 2
    splits = args.split or list(cfg.data.files)
    unknown = [s for s in splits if s not in cfg.data.files]
    if unknown:
        print(f"msl-ablate data: no split {', '.join(unknown)} in data.files "
              f"({', '.join(cfg.data.files)})", file=sys.stderr)  # fmt: skip
        return 2

    # Heavy imports after the arguments are checked.
    from msl_ablate.data.check import check_split, report_text, table_of
    from msl_ablate.data.datamodule import resolve_data_root, split_image_dir, split_path
    from msl_ablate.data.dataset import LlavaDataset

    root = resolve_data_root(cfg.data, cfg.paths.data_dir)
    dataset = max_length = None
    if not args.no_tokens:
        from msl_ablate.models.assemble import build_tokenizer, build_vision_encoder

        tokenizer, vision = build_tokenizer(cfg), build_vision_encoder(cfg)
        n_image = vision.num_tokens
        max_length = cfg.data.max_length or n_image + cfg.data.max_text_length
        dataset = LlavaDataset([], root, tokenizer, vision.image_transform, n_image, max_length)
        print(f"tokenizer of lm={cfg.lm.name}, {n_image} image tokens per image "
              f"(vision={cfg.vision.name} at {cfg.vision.image_size} px)")  # fmt: skip
    failed = False
    for split in splits:
        path = split_path(cfg.data, root, split)
        tokenize = None if dataset is None else table_of(Path(cfg.paths.cache_dir), path, dataset)
        try:
            check = check_split(split, path, split_image_dir(cfg.data, root, split), tokenize,
                                max_length)  # fmt: skip
        except (FileNotFoundError, DataError) as err:
            print(f"split {split}: {err}")
            failed = True
            continue
        print(report_text(check, args.show))
        failed |= bool(check.errors)
    if failed:
        print("errors found: training refuses these files unless data.on_error=skip, which "
              "trains without the records named above and logs their ids to MLflow")  # fmt: skip
    return int(failed)
