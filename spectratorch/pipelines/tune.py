"""Hyperparameter search: an Optuna study over training flags, shared by every process that opens its storage.

``tune(base, space, n_trials, ...)`` opens (or creates) the study ``study_name`` in an Optuna storage (SQLite under
the output directory by default, or any database URL: several ``spectratorch tune`` processes on one storage share
the study, which is how a lab spreads a search over its machines). Each trial draws the searched flags, trains one
normal run under ``<out>/trials/<study>/trial-<n>`` and answers the target metric on the validation split;
Optuna's Lightning integration prunes poor trials at the end of an epoch. The study stops once ``n_trials`` trials
have finished (complete or pruned) in the storage, whichever process ran them. A trial whose process was killed is
marked failed by the storage's heartbeat and retried with the same flags by the next process.

At the end: ``<study> best.json`` (the best trial's flags as a ready ``spectratorch train`` command),
``<study> trials.csv`` and Optuna's ``<study> history.png`` and ``<study> importance.png``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Sequence

from spectratorch.config import RunConfig
from spectratorch.data.io import atomic_path
from spectratorch.errors import ConfigError, SpectratorchError
from spectratorch.pipelines.space import Param, apply_params

__all__ = ["tune", "open_study", "default_storage", "check_on_data", "STUDY_METRIC_KEY", "STUDY_SPACE_KEY"]

_logger = logging.getLogger(__name__)

STUDY_METRIC_KEY = "target_metric"
STUDY_SPACE_KEY = "search_space"
# reason: the fields whose values only the data can refuse (a channel it lacks, a target it cannot resolve); the
# others are checked by the configuration itself (space.parse_space).
_DATA_DEPENDENT = ("targets", "channels", "tabular", "groups", "rare_classes", "min_samples")
"""The study's user attribute holding the metric it optimises; a process asking for another one is refused."""
_MAX_FAILURES = 3


def _missing(extra: str, package: str) -> ConfigError:
    return ConfigError(f"`spectratorch tune` needs {package}, which is not installed; install it with "
                       f"`pip install spectratorch[{extra}]` (or `pip install {package}`).")


def _import_optuna():
    try:
        import optuna
        import optuna_integration  # noqa: F401 -- reason: checked here so a missing package fails before any trial
    except ImportError as err:
        raise _missing("tune", err.name or "optuna") from None
    return optuna


def default_storage(out_dir: Path) -> str:
    """``sqlite:///<out_dir>/optuna.db`` (an absolute path, so every process finds the same file)."""
    return f"sqlite:///{(Path(out_dir) / 'optuna.db').resolve()}"


def _retry_callback():
    """The storage's callback that re-runs a trial whose process died, under this Optuna version's name."""
    from optuna import storages
    from optuna.exceptions import ExperimentalWarning

    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        # reason: Optuna says on every run that this callback is experimental; a user can do nothing about it.
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        return cls(max_retry=3)


def _storage(url: str, heartbeat: int):
    _import_optuna()
    from optuna.storages import RDBStorage

    kwargs = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat}
    parameters = inspect.signature(RDBStorage).parameters
    kwargs["heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters
           else "failed_trial_callback"] = _retry_callback()
    sqlite = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 120}} if sqlite else {}
    # reason: two processes creating one new SQLite file race on its schema; the loser finds it made on a retry.
    attempts = 5 if sqlite else 1
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                # reason: Optuna marks heartbeats experimental; the warning says nothing to the user.
                warnings.simplefilter("ignore")
                return RDBStorage(url, engine_kwargs=engine, **kwargs)
        except ImportError as err:
            raise ConfigError(f"--storage {url}: its database driver {err.name!r} is not installed (for "
                              "PostgreSQL: `pip install psycopg2-binary`).") from None
        except Exception as err:  # noqa: BLE001 -- reason: SQLAlchemy raises many unrelated types for a bad URL
            if attempt + 1 < attempts and type(err).__name__ in ("IntegrityError", "OperationalError") \
                    and Path(url.split("///", 1)[-1]).parent.is_dir():
                time.sleep(0.5 + attempt)
                continue
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"--storage {url} cannot be opened ({type(err).__name__}: {first[:200]}); check the "
                              "URL, that the server is up and that the database exists.") from None


def open_study(storage_url: str, study_name: str, target_metric: str, heartbeat: int = 60,
               space: Sequence[Param] | None = None):
    """Create or load the study; refuse one made for another target metric or, when ``space`` is given, another
    search space (Optuna cannot draw a flag's choices from two lists in one study, and its trials would not compare).

    Raises:
        ConfigError: the storage cannot be opened, or the study optimises another metric or searches another space.
    """
    optuna = _import_optuna()
    from spectratorch.config import TARGET_METRICS

    storage = _storage(storage_url, heartbeat)
    # reason: Optuna's own info lines ("Using an existing study ...") repeat what this run's lines say.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # reason: a small network can sit at the majority class for a few epochs before it learns; judging it earlier
    # prunes trials that would have been good (measured on the demo data with TinyVGG).
    direction = "maximize" if TARGET_METRICS[target_metric] == "max" else "minimize"
    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction, load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=5))
    have = study.user_attrs.get(STUDY_METRIC_KEY)
    if have is None:
        study.set_user_attr(STUDY_METRIC_KEY, target_metric)
    elif have != target_metric:
        raise ConfigError(f"the study {study_name!r} in {storage_url} optimises {have}, not --target-metric "
                          f"{target_metric}; use --target-metric {have} or another --study-name.")
    if space is not None:
        wanted = {p.name: _jsonable(dataclasses.asdict(p)) for p in space}
        searched = study.user_attrs.get(STUDY_SPACE_KEY)
        if searched is None:
            study.set_user_attr(STUDY_SPACE_KEY, wanted)
        elif searched != wanted:
            differ = sorted(name for name in set(searched) | set(wanted) if searched.get(name) != wanted.get(name))
            raise ConfigError(f"the study {study_name!r} in {storage_url} searches another space (it differs in "
                              f"{', '.join('--' + n.replace('_', '-') for n in differ)}); give the space it was "
                              "made with, or start a new study with another --study-name or --output-dir.")
    return study


def _jsonable(value):
    """``value`` as JSON would give it back (tuples as lists), so a stored space compares equal to a read one."""
    return json.loads(json.dumps(value))


def check_on_data(base: RunConfig, space: Sequence[Param]) -> None:
    """Check every value of the space's data-dependent flags (channels, targets, tabular columns ...) on the data:
    a channel the data lacks is one line before any trial, not a failed trial each time it is drawn.

    Raises:
        ConfigError: a value the data refuses, with the data's own reason.
    """
    from spectratorch.data.datamodule import SpectralDataModule

    for param in (p for p in space if p.name in _DATA_DEPENDENT):
        for value in param.corners():
            config = apply_params(base, {param.name: value})
            # reason: each value reads the data once; what a run would log about it is said by the trials.
            logging.disable(logging.WARNING)
            try:
                SpectralDataModule(config.data).prepare()
            except SpectratorchError as err:
                raise ConfigError(f"the search space value {value!r} of --{param.name.replace('_', '-')} is refused "
                                  f"by the data: {err}") from None
            finally:
                logging.disable(logging.NOTSET)


def _pruning_callback(trial, monitor: str):
    from optuna_integration import PyTorchLightningPruningCallback

    class _FitPruning(PyTorchLightningPruningCallback):
        """Reports and prunes during fit only (the run validates its best checkpoint again afterwards)."""

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.state.fn == "fit":
                super().on_validation_end(trainer, pl_module)

    return _FitPruning(trial, monitor=monitor)


def _objective(base: RunConfig, space: Sequence[Param], trials_dir: Path):
    from spectratorch.pipelines.run import train

    metric = base.train.target_metric

    def objective(trial) -> float:
        params = {p.name: p.suggest(trial) for p in space}
        out = trials_dir / f"trial-{trial.number:04d}"
        config = apply_params(base, params)
        # reason: the trial's value is its best checkpoint's metric on the validation split, so it is evaluated.
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, output_dir=str(out),
                                                                      evaluate=True))
        trial.set_user_attr("output_dir", str(out))
        # reason: says which machine and process ran a trial when several share the study.
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        try:
            summary = train(config, callbacks=[_pruning_callback(trial, metric)])
        except SpectratorchError as err:
            trial.set_user_attr("error", str(err))
            raise
        trial.set_user_attr("json", summary["files"].get("json", ""))
        value = summary["metrics"].get("val", {}).get(metric.removeprefix("val_"))
        if value is None or value != value:
            trial.set_user_attr("error", f"the run gave no {metric}")
            return float("nan")
        return float(value)

    return objective


class _FailureGuard:
    """Stops this process's share of the study after ``limit`` failed trials in a row (a broken setting)."""

    def __init__(self, limit: int):
        self.limit, self.in_a_row, self.last_reason = limit, 0, ""

    def __call__(self, study, trial) -> None:
        import optuna

        if trial.state != optuna.trial.TrialState.FAIL:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.last_reason = str(trial.user_attrs.get("error", ""))
        if self.in_a_row >= self.limit:
            study.stop()

    @property
    def tripped(self) -> bool:
        return self.in_a_row >= self.limit


def _train_command(config: RunConfig) -> str:
    # reason: the command is built from the parser itself, so it always parses (cli.train_command).
    from spectratorch.cli import train_command

    return train_command(config)


def _write_results(study, base: RunConfig, space: Sequence[Param], out_dir: Path, name: str) -> dict:
    optuna = _import_optuna()
    files = {}
    frame = study.trials_dataframe()
    for param in space:
        column = f"params_{param.name}"
        if param.choices is not None and column in frame:
            # reason: choices travel as JSON strings inside the study; the table shows them as the flags take them.
            frame[column] = frame[column].map(_readable_choice)
    files["trials"] = str(out_dir / f"{name} trials.csv")
    with atomic_path(files["trials"]) as tmp:
        frame.to_csv(tmp, index=False)
    result = {"study": study.study_name, "target_metric": base.train.target_metric, "direction":
              study.direction.name.lower(), "n_trials": len(study.trials),
              "states": frame["state"].value_counts().to_dict() if len(frame) else {}}
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if completed:
        best = study.best_trial
        params = {p.name: p.suggest(optuna.trial.FixedTrial(best.params)) for p in space}
        config = apply_params(base, params)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, output_dir=None))
        result["best"] = {"number": best.number, "value": best.value, "params": params,
                          "command": _train_command(config), "output_dir": best.user_attrs.get("output_dir")}
        files.update(_plots(study, out_dir, name))
    else:
        _logger.warning("no trial of study %r has completed yet: no best trial, no plots", study.study_name)
    result["files"] = {**files, "best": str(out_dir / f"{name} best.json")}
    with atomic_path(result["files"]["best"]) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str))
    return result


def _readable_choice(value):
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return " ".join(map(str, decoded)) if isinstance(decoded, list) else decoded


def _plots(study, out_dir: Path, name: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    files = {}
    for kind, draw in (("history", optuna_plots.plot_optimization_history),
                       ("importance", optuna_plots.plot_param_importances)):
        path = out_dir / f"{name} {kind}.png"
        try:
            with warnings.catch_warnings():
                # reason: Optuna marks its matplotlib plots experimental; the warning says nothing to the user.
                warnings.simplefilter("ignore")
                ax = draw(study)
            fig = (ax if not hasattr(ax, "figure") else ax.figure)
            fig.set_size_inches(8, 4.5)
            fig.tight_layout()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=110, format="png")
            plt.close(fig)
            files[kind] = str(path)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            # reason: importances need two completed trials with different values of some parameter.
            _logger.warning("no %s plot: %s", kind, err)
            plt.close("all")
    return files


def tune(base: RunConfig, space: Sequence[Param], n_trials: int, storage: str | None = None,
         study_name: str | None = None, heartbeat: int = 60) -> dict:
    """Run trials of a study until ``n_trials`` have finished in its storage; write its results.

    Args:
        base: the configuration of the command line (the searched flags override it per trial).
        space: the searched flags (:func:`spectratorch.pipelines.space.load_space`).
        n_trials: finished (complete or pruned) trials the study should reach, counted over every process.
        storage: an Optuna storage URL (default: SQLite under the output directory).
        study_name: the study (default: the project's name).
        heartbeat: seconds between a running trial's heartbeats; a trial silent for twice that is failed and retried.

    Returns:
        The summary written to ``<study> best.json``.

    Raises:
        ConfigError: Optuna missing, a storage that cannot be opened, a study made for another metric or another
            space, a value of the space the data refuses, ``n_trials < 1``.
    """
    optuna = _import_optuna()
    if n_trials < 1:
        raise ConfigError(f"--trials must be at least 1; got {n_trials}.")
    if heartbeat < 1:
        raise ConfigError(f"--heartbeat must be at least 1 second; got {heartbeat}.")
    check_on_data(base, space)
    out_dir = base.train.out_dir
    if storage is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        storage = default_storage(out_dir)
    study_name = study_name or base.train.project
    study = open_study(storage, study_name, base.train.target_metric, heartbeat, space)
    out_dir.mkdir(parents=True, exist_ok=True)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = len(study.get_trials(deepcopy=False, states=states))
    name = _safe(study_name)
    if "mlflow" in (base.train.loggers or ()) and not base.train.mlflow_uri:
        from spectratorch.training.loggers import mlflow_store, prepare_mlflow_store

        # reason: one MLflow store for the study (`<out>/mlflow.db`), so one view compares its trials; each trial's
        # own output folder had a store of its own.
        prepare_mlflow_store(base, out_dir)
        store, _ = mlflow_store(base, out_dir)
        base = dataclasses.replace(base, train=dataclasses.replace(base.train, mlflow_uri=store))
    if finished < n_trials:
        _logger.info("study %r in %s: %d of %d trials finished; running the rest", study_name, storage, finished,
                     n_trials)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        guard = _FailureGuard(_MAX_FAILURES)
        study.optimize(_objective(base, space, out_dir / "trials" / name), n_trials=None,
                       callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=states), guard],
                       catch=(SpectratorchError,), gc_after_trial=True)
        if guard.tripped:
            raise ConfigError(f"{_MAX_FAILURES} trials of study {study_name!r} failed in a row (last: "
                              f"{guard.last_reason or 'no value'}); fix the flags or the search space.")
    else:
        _logger.info("study %r already has %d finished trials (asked %d): nothing to run", study_name, finished,
                     n_trials)
    result = _write_results(study, base, space, out_dir, name)
    result["storage"] = storage
    return result


def _safe(name: str) -> str:
    """A study name usable in a file name."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return cleaned or "study"

