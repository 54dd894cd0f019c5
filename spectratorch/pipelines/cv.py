"""Cross-validation: train every fold of one configuration, summarise, optionally export the folds as one ensemble.

``run_cv(config)`` trains folds ``0..n_splits-1`` (each a normal run with all its files, named ``... k-N ...``) and
writes ``<stem with cv-N>.json``: every fold's validation and test metrics, their mean and standard deviation, and
``<stem with cv-N> folds.png``, the per-fold metrics. A fold whose JSON is already in the output directory (made
with the same settings) is not trained again, so an interrupted CV resumes where it stopped. Folds run one after
another, or ``workers`` at a time (on GPUs, one process per GPU; on the CPU, this process and ``workers - 1`` more
share the folds, each on its share of the cores: :mod:`spectratorch.pipelines.shared_folds`). With ``workers="auto"``
(the default) on the CPU, a large data file (:func:`shares_from_start`) is shared by one process per core from the
start; otherwise the first fold runs here and times the set, and when it is long enough for processes to pay for
their start (:func:`auto_workers`), the other folds are shared by one process per core.

With ``ensemble=True`` the folds' best checkpoints become one ONNX file, ``<stem with ens-N>.onnx``
(:func:`spectratorch.export.ensemble.export_ensemble`), and its test metrics are compared with the mean fold's on
the test file (``--test-source FILE``). With a fold test set (``like-val``, ``is-val``) every row has trained some
fold, so no honest comparison exists: the export is made and the comparison is skipped with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from spectratorch.config import RunConfig
from spectratorch.contract import model_name, parse_model_name
from spectratorch.data.io import atomic_path, data_fingerprint
from spectratorch.data.splits import TEST_MODES
from spectratorch.defaults import auto_transforms
from spectratorch.errors import ConfigError
from spectratorch.logs import report_to_console, warnings_said
from spectratorch.metrics import classification_metrics, per_class_of_counts

__all__ = ["run_cv", "cv_name", "fold_configs", "summarise_folds", "pool_confusions", "plot_folds", "WORKER_START_S",
           "auto_workers", "shares_from_start", "SHARE_FROM_START_BYTES"]

_logger = logging.getLogger(__name__)

# reason: these settings do not change what a fold learns, so a fold made with other values is still the same fold.
_OUTPUT_FIELDS = {"project", "output_dir", "load_this", "fit", "evaluate", "to_onnx", "save_test_preds", "resume",
                  "accelerator", "devices", "precision", "strategy", "num_nodes", "loggers", "mlflow_uri"}
_PLOTTED = ("accuracy", "f1", "balanced_accuracy", "auroc")
# reason: a fold process starts in about 8 s on a 2-core CPU (importing torch and Lightning: `python -c "import
# spectratorch.pipelines.run"` took 8.0 s), and a fold on one core of two took about 1.15x its time on both (the
# 5-fold cv of 1,000 x 2,000 generated spectra: 72 s one fold after another, 52 s in two processes of one thread
# from the start).
WORKER_START_S = 8.0
ONE_CORE_SLOWDOWN = 1.15
# reason: from about 500,000 spectral values (2 MB of float32 in a pickle or parquet file; a CSV of the same values
# is about 2.6 times larger) a fold of the small-set protocol takes several seconds, so a process started with the
# first fold takes folds the first would otherwise train after it. Measured on generated sets (5-fold cv, 2-core CPU,
# doc/small-data.md): 250 x 2,000 spectra (2.0 MB) 21.5, 23.4, 19.9 s shared from the start against 30.6, 27.6 s with
# the first fold timed; 1,000 x 2,000: 48-52 s against 55-59 s. 2,000 x 2,000 lost 2-9 % (144.5, 131.0 against
# 141.8, 120.4 s): its folds use two threads well (the first fold alone took 30 s on both cores, about 45 s on
# one), and 5 folds on 2 processes leave the last fold alone on one thread. Smaller files keep the first fold's
# timing (auto_workers), which keeps quick sets in one process. The file is not read to decide.
SHARE_FROM_START_BYTES = 2_000_000


def cv_name(config: RunConfig, split: str = "cv") -> str:
    """The stem of a CV's files: the model name with ``cv`` (or ``ens``) where the fold number goes.

    Example:
        >>> from spectratorch.config import DataConfig, ModelConfig
        >>> cv_name(RunConfig(DataConfig(targets=["OVA", "OK"], channels=["277", "380", "425"], transforms=["da"]),
        ...                   ModelConfig(arch="VGG11")))
        "VGG11 y=['OVA', 'OK'] c=('277', '380', '425') t=('da',) cv-5 s=42 eps=0.1"
    """
    return model_name({**config.name_fields(), "current_split": split})


def fold_configs(config: RunConfig) -> list[RunConfig]:
    """One configuration per fold ``0..n_splits-1`` (the validation fold changes, nothing else)."""
    return [dataclasses.replace(config, data=dataclasses.replace(config.data, current_split=k))
            for k in range(config.data.n_splits)]


def _comparable(values: dict) -> dict:
    out = {}
    for group, fields in values.items():
        for key, value in fields.items():
            if group == "train" and key in _OUTPUT_FIELDS:
                continue
            out[f"{group}.{key}"] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _fold_json(config: RunConfig) -> Path:
    """Where a fold's JSON is: its name; with ``--arch auto``, the name of the architecture and transforms it chose
    (any file of the fold's other name parts)."""
    stem = model_name(config.name_fields())
    path = config.train.out_dir / f"{stem}.json"
    if path.is_file() or config.model.arch != "auto":
        return path
    want = parse_model_name(stem)
    for candidate in sorted(config.train.out_dir.glob("*.json")):
        try:
            parts = parse_model_name(candidate.stem)
        except ConfigError:
            continue
        if dataclasses.replace(parts, arch=want.arch, transforms=want.transforms) == want:
            return candidate
    return path


def _finished(config: RunConfig) -> dict | None:
    """The summary of a fold already trained with these settings, or ``None``; refuses one made with others."""
    path = _fold_json(config)
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        _logger.warning("%s is unreadable; fold %d is trained again", path, config.data.current_split)
        return None
    if not summary.get("metrics", {}).get("val") or not Path(summary.get("files", {}).get("checkpoint", "")).is_file():
        return None
    done, wanted = _comparable(summary.get("config", {})), _comparable(config.to_dict())
    recorded, now = summary.get("data_files"), data_fingerprint(config.data)
    if recorded is not None:
        # reason: the files themselves, not how their paths were written: a file written again under its name has
        # other rows, and the same file given by another path has the same ones.
        changed = [key for key in set(recorded) | set(now) if recorded.get(key) != now.get(key)]
        if changed:
            files = " and ".join({"data": "the data file", "test_source": "the --test-source file"}[key]
                                 for key in sorted(changed))
            raise ConfigError(f"{path.name} in {config.train.out_dir} was trained on another version of {files} (its "
                              "size or modification time differs); use another --output-dir, or delete that fold's "
                              "files to train it again.")
        paths = ("data.data", "data.test_source") if "test_source" in now else ("data.data",)
        done = {key: value for key, value in done.items() if key not in paths}
    selection = summary.get("arch_selection") or {}
    # reason: an explicit solved head records its one candidate; --arch auto records them all, or the large-set rule.
    if config.model.arch == "auto" and selection and (selection.get("protocol") != "inner-cv"
                                                      or len(selection.get("candidates", {})) > 1):
        # reason: --arch auto's fold records the architecture (and the transforms of a preprocessing variant) it chose.
        wanted = {key: value for key, value in wanted.items() if key not in ("model.arch", "data.transforms")}
    # reason: unset (None) flags were resolved by the run (batch size, epochs...): any resolved value matches.
    differ = [key for key, value in wanted.items() if value is not None and done.get(key, value) != value]
    if differ:
        shown = "; ".join(f"{key}: done {done.get(key)!r}, asked {wanted[key]!r}" for key in differ[:4])
        raise ConfigError(f"{path.name} in {config.train.out_dir} was trained with other settings ({shown}); use "
                          "another --output-dir, or delete that fold's files to train it again.")
    return summary


def auto_workers(fold_seconds: float, remaining: int, cores: int) -> int:
    """Processes (this one included) for the folds left under ``--fold-workers auto`` on the CPU: one per core (at
    most one per fold) when that is estimated faster than one fold after another here, else 1.

    Estimated: this process goes on at once and each other process joins after :data:`WORKER_START_S`; every fold
    then takes :data:`ONE_CORE_SLOWDOWN` times ``fold_seconds`` and goes to the first process free. The folds are
    done when the last one ends, against ``remaining * fold_seconds`` here alone.

    Example:
        >>> auto_workers(10.0, 4, 2), auto_workers(1.0, 4, 2), auto_workers(10.0, 2, 2), auto_workers(30.0, 1, 2)
        (2, 1, 2, 1)
    """
    processes = min(remaining, cores)
    if processes < 2:
        return 1
    free = [0.0] + [WORKER_START_S] * (processes - 1)
    last = 0.0
    for _ in range(remaining):
        first = free.index(min(free))
        free[first] += ONE_CORE_SLOWDOWN * fold_seconds
        last = max(last, free[first])
    return processes if last < remaining * fold_seconds else 1


def shares_from_start(config: RunConfig, folds: int, cores: int) -> bool:
    """Whether ``--fold-workers auto`` starts the other processes with the first fold: on the CPU, with two folds and
    two cores or more, when the data file holds at least :data:`SHARE_FROM_START_BYTES`.

    Example:
        >>> from spectratorch.config import DataConfig
        >>> shares_from_start(RunConfig(DataConfig(data=__file__)), folds=5, cores=2)  # a small file
        False
    """
    path = Path(config.data.data) if config.data.data else None
    return (folds > 1 and cores > 1 and path is not None and path.is_file()
            and path.stat().st_size >= SHARE_FROM_START_BYTES)


def _parse_workers(workers) -> int | str:
    if workers == "auto":
        return workers
    try:
        value = int(workers)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(value) != str(workers).strip():
        raise ConfigError(f"--fold-workers must be 'auto' or a whole number of at least 1; got {workers!r}.")
    return value


def _train_fold(values: dict, device: str | None = None) -> dict:
    """Train the fold of configuration ``values`` (on ``device`` when given)."""
    from spectratorch.pipelines.run import train

    config = RunConfig.from_dict(values)
    if device is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, devices=device))
    return train(config)


def _import_training() -> None:
    """What a fold process imports before its first fold."""
    import spectratorch.pipelines.run  # noqa: F401


def _one_by_one(todo: list[RunConfig], device: str | None = None) -> list[dict]:
    """Train ``todo`` here, one fold after another."""
    return [_train_fold(c.to_dict(), device) for c in todo]


def _gpu_worker(config_dicts: list[dict], device: str, said: frozenset[str]) -> list[dict]:
    # reason: a spawned process starts with no logging set up; it reports like the CLI that started it, without
    # the warnings that one has said already.
    report_to_console(logging.INFO, said)
    return [_train_fold(values, device) for values in config_dicts]


def _gpu_slots(config: RunConfig) -> list[str]:
    """The GPUs listed in ``--devices`` (``0,1`` or a count > 1) when the accelerator is a GPU, else ``[]``."""
    t = config.train
    if t.accelerator not in ("auto", "gpu", "cuda"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    devices = str(t.devices)
    if devices.isdigit():
        ids = list(range(min(int(devices), torch.cuda.device_count())))
    elif devices in ("auto", "-1"):
        ids = list(range(torch.cuda.device_count()))
    else:
        ids = [int(d) for d in devices.replace(" ", "").strip("[]").split(",") if d]
    return [f"[{i}]" for i in ids] if len(ids) > 1 else []


def _on_gpus(todo: list[RunConfig], slots: list[str]) -> list[dict]:
    """Train ``todo`` one process per GPU, each GPU's folds in its own process."""
    if len(todo) <= 1:
        return _one_by_one(todo, slots[0])
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(slots), mp_context=context) as pool:
        groups = [[c.to_dict() for c in todo[i :: len(slots)]] for i in range(len(slots))]
        said = warnings_said()
        futures = [pool.submit(_gpu_worker, group, slot, said) for group, slot in zip(groups, slots) if group]
        return [summary for future in futures for summary in future.result()]


def _shared(todo: list[RunConfig], processes: int) -> list[dict]:
    """Train ``todo`` here, or shared by ``processes`` processes (this one included) on their share of the cores."""
    from spectratorch.pipelines.shared_folds import share_folds
    from spectratorch.training.hardware import usable_cpus

    processes = min(processes, len(todo))
    if processes <= 1:
        return _one_by_one(todo)
    labels = [f"fold {c.data.current_split}" for c in todo]
    return share_folds([c.to_dict() for c in todo], labels, _train_fold, processes,
                       threads=max(1, usable_cpus() // processes), warm_up=_import_training)


def _train_all(config: RunConfig, todo: list[RunConfig], workers: int | str) -> list[dict]:
    """Every fold of ``todo``, in any order: one process per GPU listed; ``workers`` processes; or under ``auto`` on
    the CPU, shared by one process per core from the start when the data file is large (:func:`shares_from_start`),
    else the first fold here alone, timed, and the others by :func:`auto_workers`."""
    from spectratorch.training.hardware import trains_on_cpu, usable_cpus

    slots = _gpu_slots(config)
    if slots:
        return _on_gpus(todo, slots)
    if workers != "auto":
        return _shared(todo, workers)
    if not todo or not trains_on_cpu(config.train.accelerator):
        return _one_by_one(todo)
    cores = usable_cpus()
    if shares_from_start(config, len(todo), cores):
        processes = min(len(todo), cores)
        _logger.info("%s is large: its %d folds are shared by %d processes from the start (--fold-workers auto)",
                     Path(config.data.data).name, len(todo), processes)
        return _shared(todo, processes)
    _import_training()  # reason: a process pays its imports once; the fold is timed alone.
    start = time.perf_counter()
    summaries = [_train_fold(todo[0].to_dict())]
    seconds = time.perf_counter() - start
    n = auto_workers(seconds, len(todo) - 1, cores)
    if n > 1:
        _logger.info("fold %d took %.0f s: the %d others are shared by %d processes (--fold-workers auto)",
                     todo[0].data.current_split, seconds, len(todo) - 1, n)
    return summaries + _shared(todo[1:], n)


def _flat_stages(metrics: dict) -> dict:
    """``val``, ``test`` and each linear baseline's stages (``baseline_<model>_<stage>``) as flat metric dicts."""
    flat = {stage: values for stage, values in metrics.items() if stage != "baseline"}
    for model, result in (metrics.get("baseline") or {}).items():
        for stage in ("val", "test"):
            if isinstance(result.get(stage), dict):
                flat[f"baseline_{model}_{stage}"] = result[stage]
    return flat


def summarise_folds(summaries: list[dict]) -> dict:
    """Mean and standard deviation (ddof 1) over the folds of every metric, per stage.

    Example:
        >>> s = summarise_folds([{"metrics": {"val": {"f1": 0.8}}}, {"metrics": {"val": {"f1": 0.9}}}])
        >>> round(s["mean"]["val"]["f1"], 3), round(s["std"]["val"]["f1"], 4)
        (0.85, 0.0707)
    """
    mean, std = {}, {}
    flat = [_flat_stages(s["metrics"]) for s in summaries]
    stages = {stage for metrics in flat for stage in metrics}
    for stage in sorted(stages):
        names = {name for metrics in flat for name in metrics.get(stage, {})}
        mean[stage], std[stage] = {}, {}
        for name in sorted(names):
            values = np.array([metrics[stage].get(name) for metrics in flat if metrics.get(stage)], dtype=float)
            values = values[np.isfinite(values)]
            mean[stage][name] = float(values.mean()) if len(values) else None
            std[stage][name] = float(values.std(ddof=1)) if len(values) > 1 else None
    return {"mean": mean, "std": std}


def pool_confusions(summaries: list[dict]) -> dict:
    """The folds' test confusion matrices summed (every row is tested once) and each class's precision, recall and F1
    of that sum: ``{"confusion": {"labels", "test"}, "per_class": {label: {...}}}``; empty when a fold has no matrix
    (a fold trained before runs kept one) or the folds' classes differ.

    Example:
        >>> fold = {"labels": ["a", "b"], "confusion": {"test": [[2, 0], [1, 1]]}}
        >>> pooled = pool_confusions([fold, fold])
        >>> pooled["confusion"]["test"], pooled["per_class"]["b"]["recall"]
        ([[4, 0], [2, 2]], 0.5)
    """
    if not summaries or any("test" not in (s.get("confusion") or {}) for s in summaries):
        return {}
    labels = summaries[0]["labels"]
    if any(s["labels"] != labels for s in summaries):
        return {}
    total = np.sum([np.asarray(s["confusion"]["test"], dtype=np.int64) for s in summaries], axis=0).tolist()
    return {"confusion": {"labels": labels, "test": total}, "per_class": per_class_of_counts(total, labels)}


def plot_folds(folds: list[dict], title: str = "", ax=None):
    """Per-fold validation and test metrics (dots), with each metric's mean (bar).

    Args:
        folds: ``[{"split": k, "metrics": {"val": {...}, "test": {...}}}, ...]``.
        title: the figure's title.
        ax: an axes to draw on (default: a new figure).

    Returns:
        ``(fig, ax)``.
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = (plt.subplots(figsize=(8, 4)) if ax is None else (ax.figure, ax))
    for offset, (stage, color) in zip((-0.18, 0.18), (("val", "tab:blue"), ("test", "tab:orange"))):
        for i, name in enumerate(_PLOTTED):
            values = [f["metrics"].get(stage, {}).get(name) for f in folds]
            values = np.array([np.nan if v is None else v for v in values], dtype=float)
            if np.isnan(values).all():
                continue
            ax.bar(i + offset, np.nanmean(values), width=0.34, color=color, alpha=0.35,
                   label=stage if i == 0 else None)
            ax.scatter(np.full(len(values), i + offset), values, color=color, s=14, zorder=3)
            for split, value in zip((f["split"] for f in folds), values):
                if np.isfinite(value):
                    ax.annotate(str(split), (i + offset, value), xytext=(4, 0), textcoords="offset points",
                                fontsize=6, va="center")
    ax.set_xticks(range(len(_PLOTTED)), [name.replace("_", " ") for name in _PLOTTED])
    ax.set_ylabel("metric (dots: folds, bars: mean)")
    ax.set_title(title, fontsize=8)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig, ax


def _save_plot(folds: list[dict], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, _ = plot_folds(folds, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _ensemble(config: RunConfig, summaries: list[dict], out_dir: Path) -> dict:
    from spectratorch.data.datamodule import SpectralDataModule
    from spectratorch.export.ensemble import export_ensemble
    from spectratorch.inference import INPUT_SPECTRA, INPUT_TABULAR, open_session

    stem = cv_name(config, "ens")
    checkpoints = [s["files"]["checkpoint"] for s in summaries]
    result: dict = {"name": stem}
    external = config.data.test_source not in TEST_MODES
    comparison = None
    if external:
        dm = SpectralDataModule(dataclasses.replace(config.data, current_split=0))
        dm.prepare()
        test = dm.stage_arrays("test")
        spectra, tabular, y = test.spectra.numpy(), test.tabular.numpy(), test.y.numpy()
    path, members = export_ensemble(checkpoints, out_dir / f"{stem}.onnx", stem)
    result["onnx"] = str(path)
    result["temperatures"] = [m.temperature for m in members]
    if external:
        session = open_session(path)
        feeds = {INPUT_SPECTRA: np.ascontiguousarray(spectra, np.float32)}
        if len(session.get_inputs()) > 1:
            feeds[INPUT_TABULAR] = np.ascontiguousarray(tabular, np.float32)
        ens = classification_metrics(y, session.run(None, feeds)[0])
        folds = [classification_metrics(y, m.probabilities(spectra, tabular)) for m in members]
        mean_fold = {k: float(np.mean([f[k] for f in folds if f[k] is not None])) for k in ens if ens[k] is not None}
        comparison = {"n_test": int(len(y)), "ensemble": ens, "mean_fold": mean_fold,
                      "gain": {k: ens[k] - mean_fold[k] for k in mean_fold}}
        from spectratorch.export.onnx import update_metadata

        update_metadata(path, metrics={"test": ens})
    else:
        _logger.warning("the ensemble's gain over the mean fold is not measured: with --test-source %s every row "
                        "trained some fold; give --test-source FILE (held-out data) to measure it",
                        config.data.test_source)
    result["test"] = comparison
    return result


def _one_model_per_fold(config: RunConfig) -> bool:
    """Whether every fold would train the same model: a test file, and the small-set protocol (which trains on the
    validation fold too), so each fold trains on every row of the data."""
    if config.data.test_source in TEST_MODES:
        return False
    from spectratorch.data.datamodule import SpectralDataModule
    from spectratorch.pipelines.run import small_protocol

    dm = SpectralDataModule(config.data)
    return small_protocol(dm.with_data_defaults(config, for_folds=True), dm)


def run_cv(config: RunConfig, ensemble: bool = False, workers: int | str = "auto") -> dict:
    """Train every fold of ``config``, write the CV summary and plot, and optionally the ensemble.

    Args:
        config: the run's configuration (its ``current_split`` is ignored).
        ensemble: also export the folds as one ONNX file and compare it with the mean fold on the test file.
        workers: folds trained at once on a CPU, each in its own process on its share of the cores; ``"auto"``: the
            first fold here, then :func:`auto_workers`. On several GPUs (``--devices 0,1``): one process per GPU.

    Returns:
        The summary written to ``<stem with cv-N>.json``.

    Raises:
        ConfigError: a fold in the output directory made with other settings, ``workers`` neither ``"auto"`` nor
            a whole number of at least 1, ``--test-source none``, or a test file with the small-set protocol (every
            fold would train on every row: one model k times).
    """
    workers = _parse_workers(workers)
    if config.data.test_source == "none":
        raise ConfigError("spectratorch cv tests every fold on rows it did not train on; --test-source none leaves "
                          "none. Use like-val, is-val or a test file (none is for the final model: spectratorch "
                          "train).")
    if _one_model_per_fold(config):
        k = config.data.n_splits
        raise ConfigError(f"with a test file (--test-source FILE) the small-set protocol trains every fold on every "
                          f"row of the data, so the {k} folds would be one model {k} times: `spectratorch train` with "
                          "the same flags trains it once and scores it on the file; `spectratorch cv` without "
                          "--test-source gives the k-fold estimate.")
    if config.data.transforms is None:
        # reason: resolved now, as each run would, so the folds' file names are known before they are trained.
        config = dataclasses.replace(config, data=dataclasses.replace(
            config.data, transforms=auto_transforms(config.data.channels)))
    out_dir = config.train.out_dir
    stem = cv_name(config)
    configs = fold_configs(config)
    done = {c.data.current_split: s for c in configs if (s := _finished(c)) is not None}
    todo = [c for c in configs if c.data.current_split not in done]
    if done:
        _logger.info("folds %s already trained in %s; skipped", sorted(done), out_dir)
    if todo:
        from spectratorch.training.loggers import prepare_mlflow_store

        prepare_mlflow_store(config, out_dir)
    for summary in _train_all(config, todo, workers):
        done[summary["config"]["data"]["current_split"]] = summary
    summaries = [done[k] for k in sorted(done)]
    folds = [{"split": k, "name": s["name"], "metrics": s["metrics"], "json": s["files"].get("json"),
              "protocol": (s.get("arch_selection") or {}).get("protocol")} for k, s in zip(sorted(done), summaries)]
    result = {"name": stem, "config": config.to_dict(), "n_folds": len(folds), "folds": folds,
              **summarise_folds(summaries)}
    if config.data.test_source in ("like-val", "is-val"):
        # reason: the test rows are the folds', each row tested once; a test file is every fold's test rows.
        result.update(pool_confusions(summaries))
    plot = out_dir / f"{stem} folds.png"
    _save_plot(folds, plot, stem)
    result["files"] = {"json": str(out_dir / f"{stem}.json"), "plot": str(plot)}
    if ensemble:
        result["ensemble"] = _ensemble(config, summaries, out_dir)
        result["files"]["ensemble"] = result["ensemble"]["onnx"]
    with atomic_path(out_dir / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=str))
    return result
