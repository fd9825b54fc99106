"""``msl-ablate cache info|clear [--encoder KEY] [overrides]``: the frozen-feature cache.

``info`` lists each encoder's cached vision features (images, size, last used) under
``data.feature_cache.dir`` (default ``<paths.cache_dir>/features``); ``clear`` deletes one encoder's (``--encoder``) or all of them.
Training fills the cache again when it needs it (``data.feature_cache``, docs/configuration.md).
"""

from __future__ import annotations

import argparse
import sys
import time

from msl_ablate.config.compose import compose
from msl_ablate.data.feature_cache import cache_folders, clear
from msl_ablate.experiment.features import feature_root
from msl_ablate.utils.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Show or clear the frozen vision features cached on this machine."""
    parser = argparse.ArgumentParser(prog="msl-ablate cache", description=main.__doc__)
    parser.add_argument("action", choices=["info", "clear"])
    parser.add_argument("--encoder", help="one encoder's key (the first column of `info`)")
    parser.add_argument("overrides", nargs="*", help="config overrides (paths.cache_dir=...)")
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = compose(args.overrides)
    except ConfigError as err:
        print(f"msl-ablate cache: {err}", file=sys.stderr)
        return 2
    root = feature_root(cfg)
    folders = cache_folders(root)
    if args.encoder is not None and args.encoder not in {f.name for f, _, _ in folders}:
        known = ", ".join(f.name for f, _, _ in folders) or "none"
        print(f"msl-ablate cache: no encoder {args.encoder!r} in {root} (cached: {known})",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.action == "clear":
        freed = clear(root, args.encoder)
        print(f"cache: deleted {freed / 1e6:.1f} MB of vision features from {root}")
        return 0
    print(
        f"vision features in {root} (limit data.feature_cache.max_gb={cfg.data.feature_cache.max_gb}):"
    )
    if not folders:
        print("  none")
    for folder, images, size in folders:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(folder.stat().st_mtime))
        print(f"  {folder.name}  {images:>7} images  {size / 1e6:>9.1f} MB  last used {used}")
    print(f"total {sum(s for _, _, s in folders) / 1e6:.1f} MB")
    return 0
