"""The run's files read back (metrics.jsonl, eval.json, config.toml): damaged content never gives a traceback.

Readers return the good part and what is wrong; `plot`, `report` and
`train --resume` work on a run whose metrics are damaged, and a resume
repairs the file (the checkpoint is the truth).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.training.rundir import RunDir
from vaelab.training.runfiles import METRICS_FIELDS, read_config_text, read_eval, read_metrics

from clihelp import one_line_error

TRAIN = [
    "train",
    "--preset",
    "mlp2",
    "--dataset",
    "shapes",
    "--image-size",
    "32",
    "--limit",
    "32",
    "--val-size",
    "16",
    "--no-progress",
]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _record(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "step": 2 * epoch,
        "skipped_steps": 0,
        "train_loss": 1.5,
        "train_elbo": -1.5,
        "train_recon": 1.0,
        "train_kl": 0.5,
        "val_split": "val",
        "val_elbo": -1.6,
        "val_recon": 1.1,
        "val_kl": 0.5,
        "seconds": 0.25,
        "images_per_s": 128.0,
    }


def _line(record) -> bytes:
    return json.dumps(record).encode() + b"\n"


def _assert_typed(record: dict) -> None:
    for key, check in METRICS_FIELDS.items():
        assert check(record[key]) == record[key] or math.isnan(record[key]), key
    assert type(record["epoch"]) is int and record["epoch"] >= 1 and isinstance(record["val_elbo"], float)


# --------------------------------------------------------------------------- metrics.jsonl


@pytest.mark.parametrize(
    "line, why",
    [
        (b'{"epoch": 2, "step": 4, "skipp', "not JSON"),  # torn mid-write
        (b"\xff\xfe{}", "not UTF-8 text"),
        (b"[1, 2]", "a list, not an object"),
        (b"42", "a number, not an object"),
        (_line({k: v for k, v in _record(2).items() if k != "val_elbo"}).strip(), "missing key 'val_elbo'"),
        (_line({**_record(2), "val_elbo": "-1.6"}).strip(), "'val_elbo' is '-1.6', not a number"),
        (_line({**_record(2), "epoch": 2.0}).strip(), "'epoch' is 2.0, not a whole number"),
        (_line({**_record(2), "epoch": True}).strip(), "'epoch' is True, not a whole number"),
        (_line({**_record(2), "epoch": 0}).strip(), "'epoch' is 0, not a whole number >= 1"),
        (_line({**_record(2), "step": -1}).strip(), "'step' is -1, not a whole number >= 0"),
        (_line({**_record(2), "val_split": None}).strip(), "'val_split' is None, not a string"),
        (_line({**_record(2), "train_kl": 10**400}).strip(), "too large for a number"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),  # nested too deeply
        (b'{"epoch": 1' + b"0" * 5000 + b"}", "not JSON"),  # an integer too long to read
        (_line(_record(1)).strip(), "epoch 1 does not follow epoch 1"),  # the same epoch twice
    ],
)
def test_each_damaged_line_is_left_out_with_its_reason(tmp_path, line, why):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(_line(_record(1)) + line + b"\n" + _line(_record(3)))
    records, problems = read_metrics(path)
    assert [r["epoch"] for r in records] == [1, 3]
    assert len(problems) == 1 and problems[0].line == 2, problems
    assert why in str(problems[0]), str(problems[0])


def test_nan_and_extra_keys_are_kept_and_ints_become_floats(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"epoch": 1, "step": 1, "skipped_steps": 0, "train_loss": NaN, "train_elbo": -3, '
        '"train_recon": 1, "train_kl": Infinity, "val_split": "test", "val_elbo": -2, "val_recon": 1, '
        '"val_kl": 1, "seconds": 1, "images_per_s": NaN, "lr": 0.001}\n\n'
    )
    (record,), problems = read_metrics(path)
    assert problems == [] and record["lr"] == 0.001 and math.isnan(record["train_loss"])
    assert record["train_elbo"] == -3.0 and type(record["train_elbo"]) is float and record["train_kl"] == math.inf


def test_a_missing_file_is_no_epochs_and_a_folder_is_one_line(tmp_path):
    assert read_metrics(tmp_path / "metrics.jsonl") == ([], [])
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(VaelabError, match="metrics.jsonl is a directory, not a metrics file"):
        read_metrics(tmp_path / "metrics.jsonl")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
damaged_records = st.builds(
    lambda r, drop, key, value: {k: v for k, v in {**r, key: value}.items() if k != drop},
    st.integers(1, 5).map(_record),
    st.sampled_from([*METRICS_FIELDS, "none"]),
    st.sampled_from([*METRICS_FIELDS, "extra"]),
    json_values,
)
damaged_lines = (
    st.binary(max_size=40)
    | json_values.map(lambda v: json.dumps(v).encode())
    | damaged_records.map(lambda r: json.dumps(r).encode())
    | damaged_records.flatmap(lambda r: st.integers(0, 200).map(lambda n: json.dumps(r).encode()[:n]))
)


@FUZZ
@given(lines=st.lists(damaged_lines.map(lambda b: b.replace(b"\n", b" ")), max_size=8))
def test_any_damage_gives_typed_records_and_problems_never_an_exception(tmp_path, lines):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"\n".join(lines))
    records, problems = read_metrics(path)
    assert len(records) + len(problems) == sum(1 for line in lines if line.strip())
    for record in records:
        _assert_typed(record)
    assert [r["epoch"] for r in records] == sorted({r["epoch"] for r in records})
    assert all("\n" not in str(p) for p in problems)


# --------------------------------------------------------------------------- eval.json

EVAL = {
    "split": "test",
    "n": 16,
    "seed": 0,
    "elbo": -90.5,
    "recon": 80.0,
    "kl": 10.5,
    "k": 0,
    "nll_iwae": None,
    "iwae_gap": None,
    "bits_per_dim": None,
    "bits_per_dim_from": None,
    "bits_per_dim_note": "why not",
    "recon_mse": 0.01,
    "latent_dim": 2,
    "active_units": 2,
    "kl_per_dim": [5.0, 5.5],
    "frechet_distance": None,
    "frechet_n": None,
    "frechet_classifier": None,
    "frechet_classifier_accuracy": None,
    "frechet_note": "skipped",
    "dataset": "shapes",
    "preset": "mlp2",
    "classes": None,
}


@pytest.mark.parametrize(
    "text, why",
    [
        ('{"split": "test", "n": 16, "elb', "not JSON"),
        ("[1, 2]", "a list, not an object"),
        (json.dumps({**EVAL, "elbo": "x"}), "'elbo' is 'x', not a number"),
        (json.dumps({**EVAL, "n": -1}), "'n' is -1"),
        (json.dumps({**EVAL, "kl_per_dim": [1, "a"]}), "'kl_per_dim' is 'a', not a number"),
        (json.dumps({**EVAL, "classes": {"a": 1}}), "'classes' is {'a': 1}, not a list"),
        (json.dumps({k: v for k, v in EVAL.items() if k != "elbo"}), "missing key 'elbo'"),
        (json.dumps({**EVAL, "mine": {"deep": [1]}}), "'mine' is {'deep': [1]}, not a value or a flat list of values"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ],
)
def test_a_damaged_eval_json_is_no_evaluation_and_one_reason(tmp_path, text, why):
    path = tmp_path / "eval.json"
    path.write_text(text)
    evaluation, problem = read_eval(path)
    assert evaluation is None and str(path) in problem and why in problem and "\n" not in problem, problem


def test_a_good_eval_json_reads_back_and_a_missing_one_is_none(tmp_path):
    assert read_eval(tmp_path / "eval.json") == (None, None)
    (tmp_path / "eval.json").write_text(json.dumps({**EVAL, "extra": [1, "a", None]}))
    evaluation, problem = read_eval(tmp_path / "eval.json")
    assert problem is None and evaluation == {**EVAL, "extra": [1, "a", None]}


@FUZZ
@given(value=json_values | st.dictionaries(st.sampled_from(sorted(EVAL)), json_values).map(lambda d: {**EVAL, **d}))
def test_any_eval_json_is_read_or_refused_in_one_line(tmp_path, value):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(value))
    evaluation, problem = read_eval(path)
    assert (evaluation is None) != (problem is None)
    assert problem is None or "\n" not in problem


# --------------------------------------------------------------------------- config.toml


@pytest.mark.parametrize(
    "data, why",
    [
        (b'preset = "mlp2"\n', None),
        (b"\xff\xfe = 1\n", "not UTF-8 text"),
        (b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        (b"[model]\nlatent_dim = 'two'\n", "model.latent_dim must be of type int"),
        (b"[model\n", "Expected ']'"),
    ],
)
def test_config_text_is_shown_with_what_is_wrong(tmp_path, data, why):
    (tmp_path / "config.toml").write_bytes(data)
    text, problem = read_config_text(tmp_path / "config.toml")
    assert text == data.decode("utf-8", "replace")
    assert (problem is None) if why is None else (why in problem and "\n" not in problem), problem


@pytest.mark.parametrize(
    "data, why", [(b"a = " + b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b"\xff = 1", "not UTF-8 text")]
)
def test_a_damaged_config_file_for_train_is_one_line(tmp_path, capsys, data, why):
    (tmp_path / "c.toml").write_bytes(data)
    assert f"c.toml is not valid TOML: {why}" in one_line_error(capsys, ["train", "--config", str(tmp_path / "c.toml")])


# --------------------------------------------------------------------------- the commands on a damaged run


@pytest.fixture
def damaged_run(tiny_run, tmp_path, capsys):
    """A copy whose metrics hold, besides epoch 1, a torn line, a list, a non-UTF-8 line and an orphan epoch 2."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    good = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(good + good[:40] + b"\n[1, 2]\n\xff\xfe\n" + _line(_record(2)))
    capsys.readouterr()
    return run


def test_resume_repairs_damaged_metrics_and_says_so(damaged_run, capsys):
    assert main(["train", "--resume", str(damaged_run), "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (
        "metrics.jsonl: dropped 3 damaged lines (line 2: not JSON; line 3: a list, not an object; "
        "line 4: not UTF-8 text)" in out
    ), out
    records = [json.loads(line) for line in (damaged_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["train_loss"] != _record(2)["train_loss"]
    assert RunDir(damaged_run).read_metrics_checked()[1] == []


def test_plot_and_report_work_on_damaged_metrics(damaged_run, capsys):
    assert main(["plot", str(damaged_run), "--only", "loss"]) == 0
    assert main(["report", str(damaged_run), "--no-eval"]) == 0
    assert [r["epoch"] for r in RunDir(damaged_run).read_metrics()] == [1, 2]


def test_a_metrics_fifo_stops_resume_at_once(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")
    proc = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--resume", str(run), "--epochs", "2", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # a hang fails
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"vaelab: error: {run / 'metrics.jsonl'} is a FIFO, not a metrics file"
    ], proc.stderr
