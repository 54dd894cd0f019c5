"""Every verb that reads data, fed hostile pickles: exit 2 and one line, never a signal or a traceback."""

import pytest

from tests.export.helpers import trained_run
from tests.security.helpers import assert_one_line_refusal, run_cli_many
from tests.security.payloads import hostile_pickles

# reason: one of each kind of harm: memory written out of bounds, heap read, class poisoned, memory bomb, a file
# opened by name, code run, a cut file.
_KINDS = ["placement-2**40", "placement--65536", "arrow-offsets", "index-build", "bytearray-6e9", "tz-passwd",
          "os-system", "truncated"]
_FAST = ["--arch", "TinyVGG", "--channels", "277", "380", "--max-epochs", "1", "--batch-size", "64"]


@pytest.mark.slow
def test_every_data_verb_refuses_every_kind(tmp_path_factory, tmp_path):
    run = trained_run(tmp_path_factory)
    payloads = dict(hostile_pickles())
    commands, names = [], []
    for kind in _KINDS:
        data = tmp_path / f"{kind}.pkl"
        data.write_bytes(payloads[kind])
        out = tmp_path / f"out-{kind}"
        verbs = {
            "train": ["train", "--data", str(data), *_FAST, "--output-dir", str(out)],
            "cv": ["cv", "--data", str(data), *_FAST, "--n-splits", "2", "--output-dir", str(out)],
            "predict": ["predict", str(run.onnx), str(data), "-o", str(out / "p.csv")],
            "export": ["export", str(run.checkpoint), "--data", str(data), "-o", str(out / "m.onnx")],
            "report": ["report", str(run.checkpoint), "--data", str(data), "-o", str(out / "s.png")],
        }
        for verb, argv in verbs.items():
            names.append(f"{verb} {kind}")
            commands.append(argv)
    for name, result in zip(names, run_cli_many(commands, cwd=tmp_path)):
        assert_one_line_refusal(result, name)
