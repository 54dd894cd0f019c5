"""Edges of the command line: outputs that would overwrite an input or cannot be written, hardware the machine lacks,
values out of range, an unreachable tracking server, two runs into one folder, leftovers of a killed run. Each is
one line and exit 2, before any training."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from spectratorch.errors import ConfigError
from spectratorch.outputs import LOCK_NAME, best_checkpoints, claim_output_dir, remove_leftovers
from spectratorch.training.loggers import probe_tracking_server
from tests.app.conftest import EXAMPLE
from tests.security.helpers import ROOT, assert_one_line_refusal, run_cli_many


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from spectratorch.data.demo import write_demo_dataset

    path = tmp_path_factory.mktemp("edges") / "d.csv"
    write_demo_dataset(path, n_samples=60, seed=3)  # reason: data the example model takes, so predict gets to writing
    return path


def test_predict_refuses_outputs_it_must_not_write(data, tmp_path):
    (tmp_path / "ro").mkdir()
    cases = {
        "its data": (str(data), "is the data itself"),
        "its model": (str(EXAMPLE), "is the model itself"),
        "a folder": (str(tmp_path), "is a folder; give a file name"),
        "empty": ("", "-o is empty"),
        "under a file": (str(data / "p.csv"), "is a file, not a folder"),
        "unwritable": ("/proc/p.csv", "cannot write /proc/p.csv"),
    }
    before = data.read_bytes()
    results = run_cli_many([["predict", str(EXAMPLE), str(data), "-o", out] for out, _ in cases.values()], tmp_path)
    for (what, (_, match)), result in zip(cases.items(), results):
        assert_one_line_refusal(result, what, match)
    assert data.read_bytes() == before


def test_export_and_report_refuse_a_folder_or_their_input_as_output_before_reading_it(data, tmp_path):
    checkpoint = tmp_path / "m.ckpt"
    checkpoint.write_bytes(b"not read: the output is refused first")
    cases = {
        "export to a folder": (["export", str(checkpoint), "-o", str(tmp_path)], "is a folder; give a file name, "
                               f"e.g. -o '{tmp_path / 'm.onnx'}'"),
        "export over its checkpoint": (["export", str(checkpoint), "-o", str(checkpoint)], "is the checkpoint itself"),
        "export over its data": (["export", str(checkpoint), "--data", str(data), "-o", str(data)],
                                 "is the data itself"),
        "report to a folder": (["report", str(checkpoint), "-o", str(tmp_path)], "is a folder"),
    }
    before = checkpoint.read_bytes(), data.read_bytes()
    results = run_cli_many([argv for argv, _ in cases.values()], tmp_path)
    for (what, (_, match)), result in zip(cases.items(), results):
        assert_one_line_refusal(result, what, match)
    assert (checkpoint.read_bytes(), data.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def test_a_write_over_a_folder_is_refused_and_leaves_it_as_it_was(tmp_path):
    from spectratorch.data.io import atomic_path

    (tmp_path / "keep").write_text("x")
    with pytest.raises(ConfigError, match="is a directory; expected the path of a file"):
        with atomic_path(tmp_path):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


def _train(data, out, *flags) -> list[str]:
    return ["train", "--data", str(data), "--channels", "277", "380", "--arch", "TinyVGG", "--output-dir", str(out),
            *flags]


def test_hardware_and_values_out_of_range_are_refused_before_training(data, tmp_path):
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cpus = len(os.sched_getaffinity(0))
    cases = {
        "--devices 99": (["--devices", str(99 + gpus)], "--devices" if gpus else
                         f"would start 99 training processes on the CPU, which has {cpus} CPUs"),
        "--precision foo": (["--precision", "foo"], "--precision must be one of auto, 64-true"),
        "--seed -1": (["--seed", "-1"], "--seed must be an integer in 0..4294967295; got -1."),
        "--accelerator tpu9": (["--accelerator", "tpu9"], "--accelerator must be one of"),
    }
    if not gpus:
        cases["--accelerator gpu"] = (["--accelerator", "gpu"], "--accelerator gpu asks for a GPU, but none is visible")
        cases["--devices 0,1"] = (["--devices", "0,1"], "names GPUs, but the run is on the CPU")
    commands = [_train(data, tmp_path / "out", *flags) for flags, _ in cases.values()]
    commands.append(["predict", str(EXAMPLE), str(data), "-o", str(tmp_path / "p.csv"), "--threads", "100000"])
    commands.append(["make-dataset", "--seed", "-1", "--samples", "10", "-o", str(tmp_path / "demo.csv")])
    started = time.perf_counter()
    results = run_cli_many(commands, tmp_path, timeout=300)
    for (what, (_, match)), result in zip(cases.items(), results):
        assert_one_line_refusal(result, what, match)
    assert_one_line_refusal(results[-2], "--threads 100000", f"is more than the {cpus} CPUs this process may use")
    assert_one_line_refusal(results[-1], "make-dataset --seed -1", "--seed must be an integer in 0..4294967295")
    assert not list((tmp_path / "out").glob("*.ckpt"))
    assert time.perf_counter() - started < 120  # reason: nothing trained, nothing forked per device


def test_more_machines_than_launched_are_named_before_the_wait(monkeypatch, caplog):
    from spectratorch.config import TrainConfig
    from spectratorch.training.hardware import _LAUNCH_VARIABLES, check_hardware

    for name in _LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level("WARNING", logger="spectratorch"):
        check_hardware(TrainConfig(num_nodes=1))
        assert not caplog.records
        check_hardware(TrainConfig(num_nodes=2))
        assert "--num-nodes 2: nothing launched the other machines" in caplog.text
        caplog.clear()
        monkeypatch.setenv("SLURM_NTASKS", "8")  # reason: a cluster's launcher started every machine's process
        check_hardware(TrainConfig(num_nodes=2))
        assert not caplog.records


def test_an_unreachable_tracking_server_is_one_line_within_seconds(data, tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # reason: bound, never listening: connections to it are refused
        started = time.perf_counter()
        (result,) = run_cli_many([_train(data, tmp_path / "out", "--logger", "mlflow", "--mlflow-uri",
                                         f"http://127.0.0.1:{port}")], tmp_path)
    assert_one_line_refusal(result, "mlflow", f"--mlflow-uri http://127.0.0.1:{port}: the tracking server does not "
                                              "answer within 5 s")
    assert time.perf_counter() - started < 60


def test_a_silent_tracking_server_is_given_up_after_the_wait():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()  # reason: accepts connections (the kernel does) and never answers
        started = time.perf_counter()
        with pytest.raises(ConfigError, match="does not answer within 1 s"):
            probe_tracking_server(f"http://127.0.0.1:{server.getsockname()[1]}", wait_s=1)
        assert time.perf_counter() - started < 5


_HOLD = ("import sys, time\nfrom spectratorch.outputs import claim_output_dir\n"
         "with claim_output_dir(sys.argv[1], 'spectratorch train --arch VGG11'):\n"
         "    print('held', flush=True)\n    time.sleep(600)\n")


def test_a_second_run_into_a_held_folder_is_refused_and_a_dead_holders_lock_taken_over(data, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        leftover = out / ".m.ckpt.abcd_123.spectratorch.tmp"
        leftover.write_bytes(b"a live run's half-written file")
        results = run_cli_many([_train(data, out), ["cv", *_train(data, out)[1:]]], tmp_path)
        for verb, result in zip(("train", "cv"), results):
            expected = (f"the output directory {out} is in use by run {holder.pid} on {socket.gethostname()} "
                        "(`spectratorch train --arch VGG11`, started ")
            assert_one_line_refusal(result, verb, expected)
        assert leftover.is_file()  # a held folder's temporary files belong to the run that holds it
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert str(holder.pid) in (out / LOCK_NAME).read_text()  # the dead run's lock file is still there
    with claim_output_dir(out, "spectratorch train") as folder:
        assert f'"pid": {os.getpid()}' in (folder / LOCK_NAME).read_text()
        assert not leftover.exists()


def test_leftover_temporary_files_of_our_naming_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "arch-auto").mkdir()
    (tmp_path / "trials" / "study" / "trial-0001").mkdir(parents=True)
    ours = [tmp_path / ".VGG11 y=['OVA', 'OK'] last.ckpt.k2j_9x0q.spectratorch.tmp",
            tmp_path / "arch-auto" / ".m.json.abcdefgh.spectratorch.tmp",
            tmp_path / "trials" / "study" / "trial-0001" / ".m.ckpt.abcdefgh.spectratorch.tmp"]
    # another program's temporary files (the generic mkstemp naming), another run's folder, deeper than a run writes
    (tmp_path / "other run").mkdir()
    (tmp_path / "other run" / LOCK_NAME).write_text("{}")
    (tmp_path / "trials" / "study" / "trial-0001" / "deeper").mkdir()
    theirs = [tmp_path / "notes.tmp", tmp_path / ".m.json.ABCDEFGH.spectratorch.tmp", tmp_path / ".m.json.abc.tmp",
              tmp_path / "m.ckpt", tmp_path / ".draft.k3j9x2ab.tmp", tmp_path / "arch-auto" / ".m.json.abcdefgh.tmp",
              tmp_path / "other run" / ".m.json.abcdefgh.spectratorch.tmp",
              tmp_path / "trials" / "study" / "trial-0001" / "deeper" / ".m.json.abcdefgh.spectratorch.tmp"]
    for path in ours + theirs:
        path.write_text("x")
    assert sorted(remove_leftovers(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in theirs)


def test_an_output_directory_that_is_a_file_is_named_so(tmp_path):
    (tmp_path / "out").write_text("notes")
    with pytest.raises(ConfigError, match=r"^the output directory .*out is a file; choose a folder with --output-dir"):
        with claim_output_dir(tmp_path / "out", "spectratorch train"):
            pass
    assert (tmp_path / "out").read_text() == "notes"


def test_a_folder_made_for_a_run_that_wrote_nothing_is_removed_and_one_with_work_keeps_its_lock(tmp_path, capsys):
    with claim_output_dir(tmp_path / "new", "spectratorch train"):
        pass
    assert not (tmp_path / "new").exists()
    with claim_output_dir(tmp_path / "used", "spectratorch train") as folder:
        (folder / "model.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == [LOCK_NAME, "model.json"]
    tmp_path.joinpath("there").mkdir()
    with claim_output_dir(tmp_path / "there", "spectratorch train"):
        pass
    assert [p.name for p in (tmp_path / "there").iterdir()] == [LOCK_NAME]  # a folder the user made stays
    # a run refused for its input leaves no folder behind
    from spectratorch.cli import main

    assert main(["train", "--data", str(tmp_path / "missing.csv"), "--output-dir", str(tmp_path / "run")]) == 2
    assert "no such dataset file" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_one_process_claims_a_folder_at_a_time(tmp_path):
    with claim_output_dir(tmp_path, "first"):
        errors = []
        thread = threading.Thread(target=lambda: _try_claim(tmp_path, errors))
        thread.start()
        thread.join()
    assert len(errors) == 1 and f"in use by run {os.getpid()}" in errors[0] and "(`first`" in errors[0]
    with claim_output_dir(tmp_path, "again"):  # released at the end of the block
        pass


def _try_claim(folder, errors):
    try:
        with claim_output_dir(folder, "second"):
            pass
    except ConfigError as err:
        errors.append(str(err))


@pytest.mark.parametrize("args,found", [
    (["predict", "{d}", "{d}/data.csv", "-o", "{d}/p.csv"], "a folder; expected a model file (.onnx)."),
    (["export", "{d}"], "a folder; expected a checkpoint file (.ckpt)."),
    (["report", "{d}"], "a folder; expected a checkpoint file (.ckpt)."),
])
def test_a_folder_where_a_file_is_expected_is_named_so(tmp_path, capsys, args, found):
    from spectratorch.cli import main

    assert main([a.format(d=tmp_path) for a in args]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{tmp_path}: {found}")


def test_an_output_that_would_replace_a_device_or_a_file_of_another_kind_is_refused(tmp_path):
    import os

    from spectratorch.errors import ConfigError
    from spectratorch.outputs import check_output_file

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"is not a regular file \(a device, a pipe or a socket\)"):
        check_output_file(fifo, {})
    dataset = tmp_path / "other.pkl"
    dataset.write_bytes(b"a dataset")
    with pytest.raises(ConfigError, match=r"other.pkl is an existing .pkl file, which this would replace with a .csv "
                                          r"file; write to a .csv file\.$"):
        check_output_file(dataset, {})
    assert dataset.read_bytes() == b"a dataset" and fifo.exists()
    (tmp_path / "old.csv").write_text("x\n")
    assert check_output_file(tmp_path / "old.csv", {}) == tmp_path / "old.csv"  # a CSV replaces a CSV
    assert check_output_file(tmp_path / "new.txt", {}) == tmp_path / "new.txt"  # a new file of any name
    (tmp_path / "again.out").write_text("x\n")
    assert check_output_file(tmp_path / "again.out", {}) == tmp_path / "again.out"  # the same -o again


@pytest.mark.parametrize("raised,status,said", [
    ("sigterm", 143, "spectratorch train: stopped by SIGTERM before the end (a file it had not finished is not "
                     "written); the same command with --resume continues a network's training from '<stem> last.ckpt'"),
    ("ctrl-c", 130, "spectratorch train: interrupted before the end (a file it had not finished is not written)"),
    ("disk", 1, "spectratorch train: error: /out/model.json: No space left on device"),
    ("memory", 1, "spectratorch train: error: not enough memory for this run: close other programs"),
])
def test_a_run_stopped_by_a_signal_or_a_full_disk_says_so_in_one_line(monkeypatch, capsys, raised, status, said):
    # Lightning turns SIGTERM into an exception that would exit 0 and Ctrl-C into sys.exit(1); a full disk is an
    # OSError: each is one line and a status that is not success
    import errno

    from spectratorch import cli

    class SIGTERMException(SystemExit):
        pass

    def stopped(args):
        if raised == "sigterm":
            raise SIGTERMException
        if raised == "ctrl-c":
            raise SystemExit(1)
        if raised == "memory":
            raise MemoryError
        raise OSError(errno.ENOSPC, "No space left on device", "/out/model.json")

    monkeypatch.setitem(cli._COMMANDS, "train", stopped)
    assert cli.main(["train"]) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith(said) and len(err.splitlines()) == 1


def test_predict_out_of_memory_says_to_split_the_file(monkeypatch, capsys):
    # what a PC of 4 GB says when a 100,000-row file does not fit: the system's ENOMEM, not a MemoryError
    import errno

    from spectratorch import cli

    def no_memory(args):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setitem(cli._COMMANDS, "predict", no_memory)
    assert cli.main(["predict", "model.onnx", "big.csv", "-o", "p.csv"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("spectratorch predict: error: not enough memory: predict reads the whole data file at once; "
                          "split it into smaller files") and len(err.splitlines()) == 1


def test_a_run_whose_file_names_would_be_too_long_is_refused_before_it_trains(tmp_path, capsys):
    # an excitation-emission matrix as 40 channels: the name lists them all
    import numpy as np
    import pandas as pd

    from spectratorch.cli import main

    rng = np.random.default_rng(0)
    columns = [f"ex{c}_{x}" for c in range(40) for x in range(300, 310)]
    frame = pd.DataFrame(rng.random((30, len(columns))), columns=columns)
    frame.insert(0, "label", ["a", "b", "c"] * 10)
    frame.to_csv(tmp_path / "eem.csv", index=False)
    assert main(["train", "--data", str(tmp_path / "eem.csv"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the run's name would be" in err
    assert "select fewer channels (--channels) or give the channels and targets shorter names." in err
    assert not list((tmp_path / "out").glob("*.ckpt"))


@pytest.mark.slow
def test_a_run_that_replaces_an_earlier_one_of_the_same_name_says_so(tmp_path, caplog):
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.data.generic import make_generic_frame
    from spectratorch.pipelines.run import train

    for seed in (1, 2):  # another data file under the same run name
        make_generic_frame(60, seed).to_csv(tmp_path / f"g{seed}.csv")
    replaced = []
    for seed in (1, 2):
        caplog.clear()
        with caplog.at_level("WARNING", logger="spectratorch"):
            summary = train(RunConfig(DataConfig(data=str(tmp_path / f"g{seed}.csv")), ModelConfig(arch="LDA"),
                                      TrainConfig(output_dir=str(tmp_path / "out"), loggers=("csv",))))
        replaced.append("holds an earlier run of the same name" in caplog.text)
    assert replaced == [False, True]
    assert (f"({summary['name']}.json): this run replaces its JSON, result sheet, ONNX file and best checkpoint"
            in caplog.text)
    # the earlier run's best checkpoint (other data, other metrics, another file name) is gone; one per name is left
    assert best_checkpoints(tmp_path / "out", summary["name"]) == {Path(summary["files"]["checkpoint"])}


@pytest.mark.slow
def test_a_network_run_that_replaces_an_earlier_one_leaves_one_best_checkpoint_and_keeps_its_input(demo_file,
                                                                                                  tmp_path):
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.pipelines.run import train

    def run(epochs: int, **train_options) -> dict:
        return train(RunConfig(DataConfig(data=str(demo_file), channels=("277",), targets=("OVA", "OK")),
                               ModelConfig(arch="TinyVGG"),
                               TrainConfig(output_dir=str(tmp_path / "out"), max_epochs=epochs, loggers=("csv",),
                                           baseline=False, **train_options)), result_sheet=False)

    first = Path(run(1)["files"]["checkpoint"])
    second = run(3)
    name = second["name"]
    assert Path(second["files"]["checkpoint"]) != first
    assert best_checkpoints(tmp_path / "out", name) == {Path(second["files"]["checkpoint"])}
    assert (tmp_path / "out" / f"{name} last.ckpt").is_file()
    # a run that starts from the earlier best (--load-this) keeps that file, its input
    source = Path(second["files"]["checkpoint"])
    third = run(2, load_this=str(source))
    assert source.is_file() and Path(third["files"]["checkpoint"]).is_file()


@pytest.mark.slow
def test_sigterm_leaves_no_temporary_file_and_says_so(tmp_path):
    # a dataset being written when SIGTERM comes: its temporary file is removed, one line, status 143
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "big.csv"
    process = subprocess.Popen([sys.executable, "-m", "spectratorch.cli", "make-dataset", "--samples", "20000",
                                "-o", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".big.csv.*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the dataset was written before the signal could be sent"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("spectratorch make-dataset: stopped by SIGTERM before the end")
    assert list(tmp_path.iterdir()) == []
