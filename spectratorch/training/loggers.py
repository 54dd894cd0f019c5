"""Experiment tracking: the Lightning loggers a run writes to (``--logger tensorboard|mlflow|csv``, repeatable).

- ``tensorboard`` (the default): event files under ``<out>/logs/<stem>/version_N``.
- ``csv``: ``metrics.csv`` and ``hparams.yaml`` under ``<out>/logs/<stem>/version_N``.
- ``mlflow`` (``pip install spectratorch[tracking]``): a run named after the stem in the experiment named after the
  project, in a local store under the output directory (``sqlite:///<out>/mlflow.db``, artifacts in
  ``<out>/mlartifacts``; ``mlflow ui --backend-store-uri sqlite:///<out>/mlflow.db`` shows it) unless
  ``--mlflow-uri`` names a tracking server. Parameters, per-epoch metrics, the final validation and test metrics,
  and as artifacts the run's JSON, result sheet, test predictions and ONNX file.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

from spectratorch.config import RunConfig
from spectratorch.errors import ConfigError

__all__ = ["make_loggers", "check_loggers", "probe_tracking_server", "MLFLOW_WAIT_S", "log_dir", "tensorboard_writer",
           "log_hparams", "log_artifacts", "quiet_lightning", "mlflow_store", "prepare_mlflow_store"]

_logger = logging.getLogger(__name__)

_ARTIFACTS = ("json", "result_sheet", "test_predictions", "onnx")


# reason: a tracking server on the lab's network answers in well under a second; past this it is not coming. MLflow
# itself retries 7 times with back-off and a 120 s timeout each (255 s against an address nothing listens on).
MLFLOW_WAIT_S = 5
_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}


def check_loggers(names: Sequence[str], mlflow_uri: str | None = None) -> None:
    """Fail before training when a logger's package is missing or its tracking server does not answer.

    Args:
        names: the loggers asked for.
        mlflow_uri: ``--mlflow-uri``; an ``http(s)`` server is asked for its ``/health`` and must answer within
            ``MLFLOW_WAIT_S`` seconds; MLflow's later requests get a bounded timeout and retries (unless the
            environment sets ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``).

    Raises:
        ConfigError: ``mlflow`` asked for and not installed, or its server unreachable.
    """
    if "mlflow" not in names:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("--logger mlflow needs MLflow, which is not installed; install it with "
                          "`pip install spectratorch[tracking]` (or `pip install mlflow`), or use --logger "
                          "tensorboard or csv.") from None
    if mlflow_uri and mlflow_uri.lower().startswith(("http://", "https://")):
        probe_tracking_server(mlflow_uri)
        for key, value in _MLFLOW_ENV.items():
            os.environ.setdefault(key, value)


def probe_tracking_server(uri: str, wait_s: float = MLFLOW_WAIT_S) -> None:
    """Ask an MLflow server for ``/health``; any HTTP answer will do.

    Raises:
        ConfigError: no answer within ``wait_s`` seconds (refused, unknown host, silent).
    """
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=wait_s):
            pass
    except urllib.error.HTTPError:
        return  # reason: an answer, even 401 or 404 from a proxy in front of it: the server is there.
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(f"--mlflow-uri {uri}: the tracking server does not answer within {wait_s:g} s ({reason}); "
                          "start it, check the address, or use --logger csv or tensorboard.") from None


# reason: Lightning's warnings that name nothing a user of spectratorch can change (the run sets these itself).
_IGNORED_WARNINGS = (
    r"Checkpoint directory .* exists and is not empty",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r".*does not have many workers",
)
# reason: advertisements for Lightning's cloud products, and accelerators this package never uses.
_DROPPED_LINES = ("💡 Tip:", "TPU available:", "HPU available:")


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(message.startswith(start) for start in _DROPPED_LINES)


_DROP_LINES = _DropLines()


def quiet_lightning() -> None:
    """Each Lightning message once, no advertisements, no warnings a user cannot act on.

    Lightning's package logger prints through a handler of its own and passes the same records on to the root
    logger's handlers; when the root logger has handlers (the command line's), Lightning's own is removed, so each
    line is printed once, in the command line's format. Idempotent.
    """
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _DROP_LINES not in logger.filters:
            logger.addFilter(_DROP_LINES)
    if not logging.getLogger().handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if logger.propagate:
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)


def mlflow_store(config: RunConfig, out_dir: Path) -> tuple[str, str | None]:
    """The tracking URI and the artifacts' location: a local store ``sqlite:///<dir>/mlflow.db`` (the output
    directory's by default; a tune's trials share the study's) keeps its artifacts beside it, in
    ``<dir>/mlartifacts``; a server keeps them where it is set up to."""
    uri = config.train.mlflow_uri or f"sqlite:///{out_dir.resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and uri.endswith("/mlflow.db"):
        return uri, (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return uri, None


def prepare_mlflow_store(config: RunConfig, out_dir: Path) -> None:
    """Create the run's local MLflow store and its experiment here, before processes share the folds of a cv: two
    fold processes creating the same new sqlite store at once collided on its tables ("table ... already exists").
    Nothing for other loggers, or for a tracking server (it has its own)."""
    uri, artifacts = mlflow_store(config, out_dir)
    if "mlflow" not in (config.train.loggers or ()) or not uri.startswith("sqlite:///"):
        return
    from mlflow import MlflowClient

    out_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(config.train.project) is None:
        client.create_experiment(config.train.project, artifact_location=artifacts)


def latest_version(log_root: Path) -> int | None:
    """The highest ``N`` of the ``version_N`` folders under ``log_root``, or ``None`` when there is none.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> latest_version(root) is None
        True
        >>> for name in ("version_0", "version_2", "version_x"):
        ...     (root / name).mkdir()
        >>> latest_version(root)
        2
    """
    numbers = [int(path.name[len("version_"):]) for path in log_root.glob("version_*")
               if path.is_dir() and path.name[len("version_"):].isdigit()] if log_root.is_dir() else []
    return max(numbers) if numbers else None


def make_loggers(config: RunConfig, out_dir: Path, stem: str, resuming: bool = False) -> list:
    """The Lightning loggers of a run, in the order of ``config.train.loggers``. A run ``resuming`` from its last
    checkpoint writes TensorBoard's events into the latest version folder of its name, so that its curves go on
    where the stopped run's end (the CSV logger, which would rewrite its file there, starts a new version)."""
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger

    quiet_lightning()
    names = config.train.loggers
    check_loggers(names)
    loggers = []
    for name in names:
        if name == "tensorboard":
            version = latest_version(out_dir / "logs" / stem) if resuming else None
            loggers.append(TensorBoardLogger(save_dir=str(out_dir / "logs"), name=stem, default_hp_metric=False,
                                             version=version))
        elif name == "csv":
            loggers.append(CSVLogger(save_dir=str(out_dir / "logs"), name=stem))
        elif name == "mlflow":
            uri, artifacts = mlflow_store(config, out_dir)
            loggers.append(MLFlowLogger(experiment_name=config.train.project, run_name=stem, tracking_uri=uri,
                                        artifact_location=artifacts, tags={"spectratorch.name": stem}))
    return loggers


def log_dir(trainer) -> str | None:
    """The folder of the first logger that writes one (TensorBoard's or the CSV logger's), or ``None``."""
    for logger in trainer.loggers:
        directory = getattr(logger, "log_dir", None)
        if directory:
            return str(Path(directory))
    return None


def tensorboard_writer(trainer):
    """TensorBoard's ``SummaryWriter`` when the run logs to TensorBoard, else ``None``."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def log_hparams(trainer, params: dict, metrics: dict) -> None:
    """Hyperparameters to every logger; the final metrics with them (TensorBoard's hparams tab) or as metrics."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics)
        else:
            logger.log_hyperparams(params)
            if metrics:
                logger.log_metrics({key.replace("/", "_"): value for key, value in metrics.items()})
        logger.save()


def log_artifacts(trainer, files: dict) -> None:
    """The run's JSON, result sheet, test predictions and ONNX file as artifacts of its MLflow run."""
    from lightning.pytorch.loggers import MLFlowLogger

    for logger in trainer.loggers:
        if not isinstance(logger, MLFlowLogger):
            continue
        for kind in _ARTIFACTS:
            path = files.get(kind)
            if path and Path(path).is_file():
                logger.experiment.log_artifact(logger.run_id, str(path))
        _logger.info("MLflow run %s (%s): %d artifacts", logger.run_id, logger._tracking_uri,
                     sum(1 for kind in _ARTIFACTS if files.get(kind) and Path(files[kind]).is_file()))
