"""Real training runs through the command line, in subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from spectratorch import parse_model_name

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--arch", "TinyVGG", "--batch-size", "64", "--channels", "277", "380", "--max-epochs", "2"]


def _run(args, cwd=ROOT, timeout=600, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, **kwargs)


@pytest.mark.slow
def test_train_py_writes_every_output(demo_file, tmp_path):
    out = tmp_path / "out"
    result = _run(["train.py", "--data", str(demo_file), *FAST, "--output-dir", str(out), "--save-test-preds"])
    assert result.returncode == 0, result.stderr[-3000:]
    stem = "TinyVGG y=['OVA', 'OK'] c=('277', '380') t=('da',) 0-5 s=42 eps=0.1"
    assert f"model: {stem}" in result.stdout
    summary = json.loads((out / f"{stem}.json").read_text())
    # no --to-onnx: the run says how to get the file predict takes
    assert "onnx" not in summary["files"] and not list(out.glob("*.onnx"))
    assert "no ONNX file (predict and the page take one): add --to-onnx, or spectratorch export CKPT" in result.stdout
    best = Path(summary["files"]["checkpoint"])
    assert best.parent == out and best.name.startswith(stem + "_") and best.suffix == ".ckpt"
    loss, f1, acc = best.stem[len(stem) + 1 :].split("_")
    # the name holds the checkpoint's validation loss, before the temperature; the JSON's is the calibrated model's
    assert float(loss) == pytest.approx(summary["calibration"]["nll_before"], rel=2e-3)
    calibration = summary["calibration"]
    assert summary["metrics"]["val"]["loss"] == calibration["nll_after"] <= calibration["nll_before"]
    assert float(f1) == pytest.approx(summary["metrics"]["val"]["f1"], abs=1e-4)
    assert float(acc) == pytest.approx(summary["metrics"]["val"]["accuracy"], abs=1e-4)
    assert parse_model_name(best).channels == ("277", "380")
    assert (out / f"{stem} last.ckpt").is_file()
    for stage in ("val", "test"):
        assert set(summary["metrics"][stage]) == {"loss", "accuracy", "f1", "balanced_accuracy", "auroc"}
        assert all(0 <= v for v in summary["metrics"][stage].values())
    baseline = summary["metrics"]["baseline"]
    assert set(baseline) == {"logistic_regression", "pls_da"}
    for name, scores in baseline.items():
        assert 0.5 < scores["test"]["accuracy"] <= 1 and 0.5 < scores["val"]["accuracy"] <= 1
        assert f"baseline {name} test: accuracy {scores['test']['accuracy']:.4f}" in result.stdout
    check = summary["baseline_check"]
    assert check["metric"] == "f1" and check["network"] == summary["metrics"]["val"]["f1"]
    assert check["message"] in result.stdout
    assert ("WORSE than the best linear baseline" in result.stdout) == check["network_is_worse"]
    assert summary["labels"] == ["The rest", "OK"]
    assert summary["config"]["data"]["channels"] == ["277", "380"]
    assert summary["config"]["model"]["arch"] == "TinyVGG"
    counts = summary["class_counts"]
    assert sum(counts["val"].values()) == pytest.approx(sum(counts["test"].values()), abs=2)
    preds = pd.read_csv(out / f"{stem}.csv")
    assert list(preds.columns) == ["id", "full_truth", "truth", "p_The rest", "p_OK"]
    assert len(preds) == sum(counts["test"].values())
    assert (preds[["p_The rest", "p_OK"]].sum(axis=1) - 1).abs().max() < 1e-5
    _check_tensorboard(Path(summary["files"]["logs"]))


def _check_tensorboard(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "val_loss", "val_f1", "val_accuracy", "lr-Adam"} <= tags
    assert len(events.Scalars("val_loss")) >= 2  # one per epoch
    assert any(p.name.startswith("events") for p in log_dir.iterdir())
    assert (log_dir / "hparams.yaml").is_file()


@pytest.mark.slow
def test_same_command_same_metrics_on_cpu(demo_file, tmp_path):
    runs = []
    for name in ("a", "b"):
        result = _run(["-m", "spectratorch.cli", "train", "--data", str(demo_file), *FAST, "--transforms", "da",
                       "mixup", "--output-dir", str(tmp_path / name)])
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(json.loads(next((tmp_path / name).glob("*.json")).read_text())["metrics"])
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(demo_file, tmp_path):
    args = ["train.py", "--data", str(demo_file), "--arch", "TinyVGG", "--batch-size", "32", "--channels", "277",
            "--max-epochs", "5", "--early-stop-patience", "10"]
    full = _run([*args, "--output-dir", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-3000:]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, *args, "--output-dir", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    last = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("* last.ckpt"))
        if found:
            last = found[0]
            break
        time.sleep(0.05)
    assert last is not None, "no last checkpoint appeared"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("*.json")), "the run finished before it was killed"
    resumed = _run([*args, "--output-dir", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    a = json.loads(next((tmp_path / "full").glob("*.json")).read_text())
    b = json.loads(next(out.glob("*.json")).read_text())
    assert a["metrics"] == b["metrics"]
    assert Path(a["files"]["checkpoint"]).name == Path(b["files"]["checkpoint"]).name
    # TensorBoard's curves go on in the stopped run's version folder: one version, the events of both processes
    versions = list((out / "logs" / b["name"]).iterdir())
    assert [v.name for v in versions] == ["version_0"]
    writers = {path.name.rsplit(".", 2)[1] for path in versions[0].glob("events.out.tfevents.*")}  # their pids
    assert len(writers) == 2


# reason: a launcher file, because Lightning starts rank 1 by running this process's command line again. It
# records, per rank, the rows each training batch gathered, each training batch's loss and size, the epoch's logged
# training loss and the files and metrics the run reported. The run itself evaluates every validation and test row
# on every rank, so its figures would agree across ranks even with no all-reduce at all; to make the reported
# figures exist only through the sync, the evaluation after the fit (`trainer.validate`, `trainer.test`) gets half
# of the rows on each rank (rows 0, 2, 4, ... on rank 0), as a sharded evaluation would.
_DDP_LAUNCHER = """
import json, sys
import lightning.pytorch as pl
from torch.utils.data import DataLoader
from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from spectratorch.data import datamodule
from spectratorch.pipelines.run import train

data, out, record = sys.argv[1:4]
seen, losses, state = [], [], {"training": False}
gather, loader = datamodule._GatherDataset.__getitem__, datamodule.SpectralDataModule._loader


def _recording(self, index):
    if state["training"]:
        seen.extend(index.tolist())
    return gather(self, index)


def _sharded_evaluation(self, stage, shuffle):
    trainer = self.trainer
    if stage == "train" or trainer.state.fn == "fit":
        return loader(self, stage, shuffle)
    source, rows = self._stage_rows(stage)
    rows = rows[trainer.global_rank :: trainer.world_size]
    sampler = datamodule.IndexBatchSampler(rows, 64, False, 0, False)
    return DataLoader(source.dataset, batch_size=None, sampler=sampler, num_workers=0)


datamodule._GatherDataset.__getitem__ = _recording
datamodule.SpectralDataModule._loader = _sharded_evaluation


class Recorder(pl.Callback):
    def on_train_epoch_start(self, trainer, module):
        state["training"] = True

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        losses.append([float(outputs["loss"]), len(batch["y"])])

    def on_validation_start(self, trainer, module):
        state["training"] = False

    def on_train_epoch_end(self, trainer, module):
        state["train_loss"] = float(trainer.callback_metrics["train_loss"])


config = RunConfig(DataConfig(data=data, channels=("277", "380"), batch_size=64),
                   ModelConfig(arch="TinyVGG"),
                   TrainConfig(max_epochs=1, accelerator="cpu", devices="2", strategy="ddp", output_dir=out))
summary = train(config, callbacks=[Recorder()])
import torch.distributed as dist
rank = dist.get_rank()
with open(f"{record}/rank{rank}.json", "w") as f:
    json.dump({"rows": seen, "losses": losses, "train_loss": state["train_loss"], "files": summary["files"],
               "metrics": summary["metrics"], "world_size": dist.get_world_size()}, f)
"""


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(demo_file, tmp_path):
    from spectratorch.config import DataConfig
    from spectratorch.data.datamodule import SpectralDataModule

    launcher, out, record = tmp_path / "launch.py", tmp_path / "ddp", tmp_path / "record"
    launcher.write_text(_DDP_LAUNCHER)
    record.mkdir()
    result = _run([str(launcher), str(demo_file), str(out), str(record)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # disjoint shards that together cover the training split (less the rows cut to make it a multiple of 2)
    dm = SpectralDataModule(DataConfig(data=str(demo_file), channels=("277", "380"), batch_size=64))
    dm.prepare()
    train_rows = set(dm.stage_arrays("train").rows.tolist())
    shards = [set(r["rows"]) for r in ranks]
    assert len(shards[0]) == len(ranks[0]["rows"]) and len(shards[1]) == len(ranks[1]["rows"])  # one epoch, once each
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] <= train_rows
    assert abs(len(shards[0]) - len(shards[1])) == 0 and len(shards[0]) >= (len(train_rows) - 64 * 2) // 2
    # only rank 0 writes: rank 1 reports no file, and the folder holds one run's outputs
    assert ranks[1]["files"] == {} and set(ranks[0]["files"]) >= {"checkpoint", "json", "result_sheet", "logs"}
    stem = json.loads(next(out.glob("*.json")).read_text())["name"]
    best = Path(ranks[0]["files"]["checkpoint"]).name
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files == sorted([best, f"{stem} last.ckpt", f"{stem}.json", f"{stem} result sheet.png"]), files
    assert len([p for p in out.iterdir() if p.is_dir()]) == 1  # the loggers' folder
    assert len(list(Path(ranks[0]["files"]["logs"]).parent.iterdir())) == 1  # one logger version
    # synced training loss: each rank logs the mean over both shards' batches, not over its own
    batches = [loss_size for r in ranks for loss_size in r["losses"]]
    both = sum(loss * size for loss, size in batches) / sum(size for _, size in batches)
    own = [sum(loss * size for loss, size in r["losses"]) / sum(size for _, size in r["losses"]) for r in ranks]
    assert abs(own[0] - own[1]) > 1e-4  # the shards' own means differ, so the check below can tell
    assert [r["train_loss"] for r in ranks] == [pytest.approx(both, rel=1e-5)] * 2
    # synced metrics: each rank evaluated half of the rows, and both report the figures of all of them, equal to one
    # process evaluating the same checkpoint
    single = _run(["train.py", "--data", str(demo_file), *FAST, "--load-this", ranks[0]["files"]["checkpoint"],
                   "--no-fit", "--no-baseline", "--accelerator", "cpu", "--devices", "1",
                   "--output-dir", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr[-3000:]
    alone_summary = json.loads(next((tmp_path / "one").glob("*.json")).read_text())
    alone = alone_summary["metrics"]
    for stage in ("val", "test"):
        assert set(ranks[0]["metrics"][stage]) == set(alone[stage]) == {"loss", "accuracy", "f1", "balanced_accuracy",
                                                                        "auroc"}
        for rank in ranks:
            for name, value in rank["metrics"][stage].items():
                # rank 1 writes nothing and keeps Lightning's loss, before the temperature rank 0 fits
                if name != "loss" or rank is ranks[0]:
                    assert value == pytest.approx(alone[stage][name], abs=1e-5), (stage, name)
    assert ranks[1]["metrics"]["val"]["loss"] == pytest.approx(alone_summary["calibration"]["nll_before"], abs=1e-5)


@pytest.mark.parametrize("args,message", [
    (["--arch", "VGG99"], "unknown --arch 'VGG99'; expected one of"),
    (["--transforms", "blur"], "unknown transform(s) ['blur']"),
    (["--arch-opt", "depth=3"], "--arch-opt depth=3: TinyVGG takes no option 'depth'; its options are batch_norm, "
     "dropout, pool_bins, width."),
    (["--targets", "OVA", "ZZ"], "no row has the class value 'ZZ'"),
    (["--channels", "277", "123"], "unknown channel(s) ['123']"),
    (["--current-split", "5"], "--current-split must be in 0..4"),
    (["--output-dir", "/proc/nope"], "not writable"),
    (["--early-stop-patience", "-1"], "--early-stop-patience must be in [0, 1000000]; got -1."),
    (["--scheduler-patience", "-1"], "--scheduler-patience must be in [0, 1000000]; got -1."),
    (["--scheduler-cooldown", "-2"], "--scheduler-cooldown must be in [0, 1000000]; got -2."),
    (["--rare-classes", "other", "--min-samples", "0"], "--min-samples must be in [1, 1000000000]; got 0."),
    (["--precision", "16-true", "--accelerator", "cpu"], "--precision 16-true is for a GPU; the run is on the CPU"),
    (["--project", "../elsewhere"], "--project is a name (the outputs go to checkpoints/<project>), not a path; got "
     "'../elsewhere'; --output-dir takes a path."),
    (["--strategy", "foo"], "--strategy must be auto or one of Lightning's (ddp, ddp_spawn, ddp_fork, ddp_notebook, "
     "...); got 'foo'."),
])
def test_bad_input_one_line_no_traceback(demo_file, capsys, args, message):
    # reason: in this process (the command's own `main`, as `train.py` calls it): a subprocess per case would only
    # add an interpreter start; the one below checks the real `train.py` process and its exit status.
    from spectratorch.cli import main

    assert main(["train", "--data", str(demo_file), *FAST, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_an_early_stop_patience_of_0_is_kept():
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.defaults import resolve_defaults

    def patience(value):
        config = RunConfig(DataConfig(channels=("277",)), ModelConfig(arch="TinyVGG"),
                           TrainConfig(early_stop_patience=value))
        return resolve_defaults(config, 500).train.early_stop_patience

    assert patience(0) == 0 and patience(5) == 5 and patience(None) >= 8


def test_a_flag_argparse_refuses_is_one_line(capsys):
    from spectratorch.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "--max-epochs", "two"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "spectratorch train: error: argument --max-epochs/--max_epochs: invalid int value: 'two' (see spectratorch "
        "train --help)"]


def test_bad_input_through_train_py_exits_2_on_one_line(demo_file):
    result = _run(["train.py", "--data", str(demo_file), *FAST, "--targets", "OVA", "ZZ"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("spectratorch train: error: ")
    assert "no row has the class value 'ZZ'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_load_this_with_other_configuration(demo_file, tmp_path):
    out = tmp_path / "a"
    done = _run(["train.py", "--data", str(demo_file), *FAST, "--max-epochs", "1", "--output-dir", str(out)])
    assert done.returncode == 0
    ckpt = next(p for p in out.glob("*.ckpt") if not p.name.endswith("last.ckpt"))
    result = _run(["train.py", "--data", str(demo_file), *FAST, "--channels", "277", "--load-this", str(ckpt),
                   "--no-fit", "--output-dir", str(tmp_path / "b")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "channels: checkpoint ['277', '380'], this run ['277']" in result.stderr
    evaluated = _run(["train.py", "--data", str(demo_file), *FAST, "--load-this", str(ckpt), "--no-fit",
                      "--output-dir", str(tmp_path / "c")])
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    first = json.loads(next(out.glob("*.json")).read_text())["metrics"]
    again = json.loads(next((tmp_path / "c").glob("*.json")).read_text())["metrics"]
    assert first["val"]["accuracy"] == pytest.approx(again["val"]["accuracy"])


def test_help_documents_defaults(capsys):
    # reason: in this process; `train.py` itself runs as a subprocess in the test above.
    from spectratorch.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--targets", "--n-splits", "--eps", "--mixup-alpha", "--accelerator", "--resume", "--target_codes"):
        assert flag in out
    assert "(default: 0.1)" in out
