"""Finding a trained model again: its training folder from a key or an MLflow run id, and the
config saved with it, with where it is now (``paths``, ``tracking``) from today's command line.
Shared by the commands that act on a finished run (``evaluate``, ``export``).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from msl_ablate.experiment.layout import RUN_CONFIG, TrainingLayout, trainings_dir
from msl_ablate.utils.errors import ConfigError

# Root keys an override may set: where the run is now. The model, data and strategy are the
# run's own (its config.yaml).
WHERE_KEYS = ("paths", "tracking")


def _client(tracking: DictConfig):
    """An MLflow client, or None when a local sqlite store does not exist (never create one)."""
    from mlflow.tracking import MlflowClient

    uri = tracking.tracking_uri
    if not tracking.enabled or (
        uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file()
    ):
        return None
    return MlflowClient(tracking_uri=uri)


def locate_run(run: str, current: DictConfig) -> tuple[str, Path]:
    """Find a trained model's key and folder from a training key or an MLflow run id.

    Args:
        run: The ``--run`` argument: a training key, or the id of a training or evaluation run.
        current: The composed command-line config (``paths``, ``tracking``).

    Returns:
        ``(training_key, training folder)``.

    Raises:
        FileNotFoundError: Neither a training folder with a ``config.yaml`` nor an MLflow run.
    """
    from mlflow.exceptions import MlflowException

    trainings = trainings_dir(current.paths.output_dir)
    if (trainings / run / RUN_CONFIG).is_file():
        return run, trainings / run
    client = _client(current.tracking)
    if client is not None:
        try:
            key = client.get_run(run).data.tags.get("training_key")
        except MlflowException:
            key = None
        if key is not None and (trainings / key / RUN_CONFIG).is_file():
            return key, trainings / key
        if key is not None:
            raise FileNotFoundError(
                f"--run {run!r}: MLflow run of training key {key!r}, but "
                f"{trainings / key / RUN_CONFIG} does not exist (pass the paths.root the run "
                f"was trained with)"
            )
    known = sorted(p.parent.name for p in trainings.glob(f"*/{RUN_CONFIG}"))
    raise FileNotFoundError(
        f"--run {run!r} is neither a training key with {trainings}/<training_key>/{RUN_CONFIG} "
        f"(known: {known or 'none'}) nor an MLflow run id in {current.tracking.tracking_uri} "
        f"(set paths.root=... / tracking.tracking_uri=... to where the run is)"
    )


def override_keys(overrides: list[str]) -> list[str]:
    """The config key (or group) each override sets, as Hydra parses it."""
    return [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)]


def check_overrides(
    overrides: list[str], how_keys: tuple[str, ...], command: str, how_hint: str
) -> None:
    """Reject overrides of the model: it comes from the run's ``config.yaml``.

    Args:
        overrides: The command line's overrides.
        how_keys: Root keys the command takes besides ``WHERE_KEYS``.
        command: The command's name, for the message.
        how_hint: How the message lists ``how_keys``.

    Raises:
        ConfigError: Listing every override whose root key is not in ``WHERE_KEYS + how_keys``.
    """
    allowed = (*WHERE_KEYS, *how_keys)
    bad = [
        o for o, key in zip(overrides, override_keys(overrides), strict=True)
        if key.split(".")[0] not in allowed
    ]  # fmt: skip
    if bad:
        raise ConfigError(
            [
                f"override {o!r}: {command} takes only {', '.join(f'{k}.*' for k in WHERE_KEYS)}"
                f"{', ' + how_hint if how_hint else ''} (the model is the run's, from "
                f"outputs/trainings/<training_key>/config.yaml)"
                for o in bad
            ]
        )


def load_run_config(
    run_dir: Path, current: DictConfig, overrides: list[str], how_keys: tuple[str, ...] = ()
) -> DictConfig:
    """The run's saved config with today's ``paths``/``tracking`` and the ``how_keys`` overrides.

    Raises:
        ConfigError: The saved config does not fit the schema (e.g. a key removed since).
    """
    from omegaconf.errors import OmegaConfBaseException

    from msl_ablate.config.schema import TrainConfig

    path = TrainingLayout(run_dir).config
    try:  # typed like a composed config (enums, defaults) and checked against the schema
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path))
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path} does not fit the config schema: {err}") from err
    where = {g: OmegaConf.to_container(current[g], resolve=True) for g in WHERE_KEYS}
    cfg = OmegaConf.merge(cfg, where)  # both groups have fixed keys: the merge replaces them
    for key in override_keys(overrides):
        if key == "benchmarks":  # another suite option (conf/benchmarks/)
            cfg.eval.suite = current.eval.suite
        elif key.split(".")[0] in how_keys:
            OmegaConf.update(cfg, key, OmegaConf.select(current, key), force_add=True)
    return cfg
