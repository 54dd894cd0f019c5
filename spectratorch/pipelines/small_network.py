"""The network candidate of the small-set protocol: when it joins, and its number of epochs by inner CV.

A CNN (``NETWORK``, VGG11) trained by Adam costs minutes where the solved heads cost seconds, and on a few hundred
spectra it rarely wins. So it joins the inner-CV choice of ``pipelines/small.py`` only

- when the training rows are at least ``NETWORK_MIN_ROWS`` (the size at which the lab's rule trains VGG11) and the
  run trains on a GPU, or
- when ``--time-budget SECONDS`` is given and positive (``--time-budget 0`` keeps it out at any size).

Its number of epochs is chosen like any grid value: on every inner fold the network is trained by the ordinary
Lightning loop (``SpectralModule``) on the fit rows, and after every epoch its logits on the held rows are kept; the
out-of-fold predictions of epoch ``e`` are scored like a grid value, the best epoch count wins (ties keep fewer
epochs), and the network is refit on every training row for that many epochs. With a budget, the first epoch of
the first inner fold is timed and the epochs are capped so that all inner folds and the refit fit in the budget.
"""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import torch

from spectratorch.defaults import LARGE_TRAIN, auto_batch_size
from spectratorch.models.batched import predict_logits

__all__ = ["NETWORK", "NETWORK_MIN_ROWS", "network_rule", "network_inner_cv", "train_network"]

_logger = logging.getLogger(__name__)

# reason: the CNN the lab's large-set rule trains (defaults.auto_arch); it won there, on 2,000+ training rows.
NETWORK = "VGG11"
# reason: below the lab's LARGE_TRAIN rule the solved heads took seconds where a CNN fold took about 50 s on 60
# spectra and did not win (issue 16, README's earlier table); the 1,000- and 2,000-spectra speed goals (1,600
# training rows per fold) stay below it.
NETWORK_MIN_ROWS = LARGE_TRAIN


def network_rule(n_rows: int, time_budget: float | None, on_cpu: bool = False) -> tuple[bool, str]:
    """Whether the network joins the choice, and why it does or does not.

    Example:
        >>> network_rule(96, None)
        (False, 'below 2000 training rows; --time-budget SECONDS lets it join')
        >>> network_rule(96, 120.0), network_rule(5000, 0.0)
        ((True, '--time-budget 120 s'), (False, '--time-budget 0'))
        >>> network_rule(2400, None), network_rule(2400, None, on_cpu=True)[1][:46]
        ((True, '2400 >= 2000 training rows'), 'the run trains on the CPU, where its inner fol')
    """
    if time_budget is not None:
        return (True, f"--time-budget {time_budget:g} s") if time_budget > 0 else (False, "--time-budget 0")
    if n_rows < NETWORK_MIN_ROWS:
        return False, f"below {NETWORK_MIN_ROWS} training rows; --time-budget SECONDS lets it join"
    # reason: on a CPU the network's inner folds and refit on 5,000 generated spectra of 300 points (2,666 rows per
    # inner fold) take about an hour (61 and 72 min estimated after the first epoch, on a 2-core CPU;
    # doc/small-data.md, "The network"), an hour per outer fold of a cv, for an accuracy on such sets that was not
    # measured: without a GPU it joins only when asked for with --time-budget.
    if on_cpu:
        return False, ("the run trains on the CPU, where its inner folds take hours (about one for 5,000 generated "
                       "spectra of 300 points); --time-budget SECONDS lets it join within that time")
    return True, f"{n_rows} >= {NETWORK_MIN_ROWS} training rows"


class _Rows(torch.utils.data.Dataset):
    """Rows of in-memory tensors, fetched a whole batch of indices at a time (no per-sample loop)."""

    def __init__(self, spectra: torch.Tensor, tabular: torch.Tensor, y: np.ndarray):
        self.spectra, self.tabular, self.y = spectra, tabular, torch.as_tensor(y, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index) -> dict:
        index = torch.as_tensor(index)
        return {"spectra": self.spectra[index], "tabular": self.tabular[index], "y": self.y[index]}


def _loader(spectra, tabular, y, seed: int) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(range(len(y)), generator=generator),
                                            batch_size=auto_batch_size(len(y)), drop_last=False)
    return torch.utils.data.DataLoader(_Rows(spectra, tabular, y), sampler=sampler, batch_size=None)


def _epoch_recorder(held: tuple | None, stop_after: list):
    import lightning.pytorch as pl

    class EpochRecorder(pl.Callback):
        """After every training epoch: the logits of the held rows, the epoch's seconds; stops at ``stop_after[0]``."""

        def __init__(self):
            self.logits, self.seconds, self._start = [], [], 0.0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.seconds.append(time.perf_counter() - self._start)
            if held is not None:
                was_training = pl_module.training
                self.logits.append(predict_logits(pl_module, held[0], held[1]).astype(np.float64))
                pl_module.train(was_training)
            if len(self.seconds) >= stop_after[0]:
                trainer.should_stop = True

    return EpochRecorder()


def train_network(module_kwargs: dict, spectra: torch.Tensor, tabular: torch.Tensor, y: np.ndarray, epochs: int,
                  seed: int, held: tuple | None = None, on_first_epoch=None, on_epoch=None):
    """Train a ``SpectralModule`` by the ordinary Lightning loop for ``epochs`` epochs on these rows.

    Args:
        module_kwargs: ``SpectralModule`` keyword arguments (the network's architecture and options).
        spectra, tabular, y: the rows trained on (raw spectra ``[N, C, L]``, tabular ``[N, T]``, classes ``[N]``).
        epochs: the most epochs.
        seed: of the weights and the batch order.
        held: ``(spectra, tabular)`` scored after every epoch, or ``None``.
        on_first_epoch: ``seconds -> epochs`` called after the first epoch; may lower the epochs.
        on_epoch: called with no argument after every epoch (a progress bar's update).

    Returns:
        ``(module, [held logits [M, K] per epoch], [seconds per epoch])``.
    """
    import lightning.pytorch as pl

    from spectratorch.training.loggers import quiet_lightning
    from spectratorch.training.module import SpectralModule

    pl.seed_everything(seed, workers=True, verbose=False)
    module = SpectralModule(**module_kwargs)
    module.model.fit(spectra, tabular, seed=seed)  # reason: unsupervised parts only (the scaling)
    stop_after = [epochs]
    recorder = _epoch_recorder(held, stop_after)

    class FirstEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if on_epoch is not None:
                on_epoch()
            if on_first_epoch is not None and len(recorder.seconds) == 1:
                stop_after[0] = max(1, min(stop_after[0], on_first_epoch(recorder.seconds[0])))
                trainer.should_stop = trainer.should_stop or stop_after[0] <= 1

    quiet_lightning()
    lightning_logger = logging.getLogger("lightning.pytorch")
    level = lightning_logger.level
    # reason: one trainer per inner fold and one for the refit; their device and stop lines would repeat 4 to 6
    # times.
    lightning_logger.setLevel(max(level, logging.WARNING))
    try:
        trainer = pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, limit_val_batches=0, callbacks=[recorder, FirstEpoch()])
        with warnings.catch_warnings():
            # reason: the inner folds' held rows are scored by the recorder, so there is no validation loop on
            # purpose.
            warnings.filterwarnings("ignore", message=r".*validation_step.*val_dataloader")
            trainer.fit(module, _loader(spectra, tabular, y, seed))
    finally:
        lightning_logger.setLevel(level)
    module.eval()
    return module.cpu(), recorder.logits, recorder.seconds


def network_inner_cv(module_kwargs: dict, spectra: torch.Tensor, tabular: torch.Tensor, y: np.ndarray,
                     n_classes: int, folds: list, max_epochs: int, seed: int,
                     time_budget: float | None = None) -> tuple[np.ndarray, dict]:
    """Out-of-fold logits of the network after every epoch ``[E, N, K]``, and what was done (for the JSON).

    With ``time_budget``, the first epoch of the first inner fold is timed, and ``E`` is capped so that
    ``len(folds)`` inner trainings and the refit (on ``len(folds) / (len(folds) - 1)`` times the rows) fit in it.
    """
    from spectratorch.pipelines.fold_bars import fold_bar

    start = time.perf_counter()
    epochs = [max_epochs]
    k = len(folds)
    bar = fold_bar(total=k * max_epochs, desc="network inner CV", unit="epoch", leave=False)

    def after_first_epoch(seconds: float) -> int:
        # reason: an epoch on the whole training set costs k / (k - 1) times one on an inner fold's fit rows.
        per_epoch_all = seconds * (k + k / max(k - 1, 1))
        if time_budget is not None:
            epochs[0] = max(1, min(epochs[0], int(math.floor(time_budget / max(per_epoch_all, 1e-9)))))
        bar.total = k * epochs[0]
        bar.refresh()
        # reason: on a CPU the network's inner CV can take an hour where the solved heads take seconds: say so early.
        _logger.info("the network's first epoch on %d rows took %.1f s: its %d inner folds and its refit (at most %d "
                     "epochs each) take up to about %s%s", len(folds[0][0]), seconds, k, epochs[0],
                     _duration(per_epoch_all * epochs[0]),
                     "" if time_budget is not None else "; --time-budget SECONDS caps them, --time-budget 0 leaves "
                     "the network out")
        return epochs[0]

    per_fold = []
    try:
        for i, (fit, held) in enumerate(folds):
            fit_index, held_index = torch.as_tensor(fit), torch.as_tensor(held)
            _, logits, seconds = train_network(module_kwargs, spectra[fit_index], tabular[fit_index], y[fit],
                                               epochs[0], seed, held=(spectra[held_index], tabular[held_index]),
                                               on_first_epoch=after_first_epoch if i == 0 else None,
                                               on_epoch=bar.update)
            per_fold.append((held, logits[: epochs[0]], seconds))
            # reason: a fold that stopped early leaves its unused epochs on the bar; it moves on to the next fold.
            bar.n = min(bar.total, (i + 1) * epochs[0])
            bar.refresh()
    finally:
        bar.close()
    n_epochs = min(len(logits) for _, logits, _ in per_fold)
    oof = np.zeros((n_epochs, len(y), n_classes))
    for held, logits, _ in per_fold:
        oof[:, held] = np.stack(logits[:n_epochs])
    record = {"max_epochs": max_epochs, "epochs_trained": n_epochs, "time_budget_s": time_budget,
              "epoch_seconds": round(float(np.mean([s for _, _, sec in per_fold for s in sec])), 3),
              "inner_cv_seconds": round(time.perf_counter() - start, 2)}
    return oof, record


def _duration(seconds: float) -> str:
    """``"40 s"``, ``"12 min"``, ``"2.5 h"``.

    Example:
        >>> _duration(40.2), _duration(725.0), _duration(9000.0)
        ('40 s', '12 min', '2.5 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
