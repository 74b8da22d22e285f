"""A new user's first hour: ``--help`` that fits 80 columns, and usage errors as one ``error:`` line.

Every command's help at 80 columns shows every option name whole (no "…") and no line over 80
characters; ``spanqa train --help`` is short (spanqa's settings and the usual training ones),
``--help-all`` has every TrainingArguments field; a usage mistake click's parser finds (an
unknown option, a value out of range) is one ``error:`` line on stderr and exit status 1, like
spanqa's own errors.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from spanqa.interfaces.cli import app

runner = CliRunner()
NARROW = {"COLUMNS": "80", "TERMINAL_WIDTH": "80"}

COMMANDS = [
    [],
    ["train"],
    ["predict"],
    ["ask"],
    ["evaluate"],
    ["score"],
    ["serve"],
    ["export"],
    ["index"],
    ["report"],
    ["version"],
    ["data"],
    ["data", "check"],
    ["data", "convert"],
    ["data", "split"],
]


def _click_command(path: list[str]) -> typer.core.TyperCommand:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args], env=NARROW)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "spanqa")
def test_help_fits_80_columns_with_every_name_whole(path):
    text = _help(*path, "--help")
    assert "…" not in text
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    if path and path[0] == "train":
        return  # parsed by HfArgumentParser: its options are checked below
    for param in _click_command(path).params:
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (path, name)
    cut = re.findall(r"--[\w-]+-\n\s*[a-z]", text)  # an option name cut at a hyphen (serve's epilog did)
    assert not cut, cut


@pytest.mark.parametrize("width", range(60, 81))
def test_serve_epilog_never_cuts_an_option_name(width):
    command = _click_command(["serve"])
    context = command.make_context("serve", [], terminal_width=width, resilient_parsing=True)
    formatter = context.make_formatter()
    command.format_epilog(context, formatter)
    epilog = formatter.getvalue()
    assert "--api-key-file" in epilog and "--allowed-hosts" in epilog, epilog  # click broke a line after "--api-key-"
    assert max(map(len, epilog.splitlines())) <= width


def test_train_help_is_short_and_lists_spanqa_settings_first():
    from spanqa.jobs.arguments import SPANQA_FIELDS, TrainDataArguments

    text = _help("train", "--help")
    lines = text.splitlines()
    assert len(lines) <= 120, len(lines)
    assert "(default: None)" not in text
    assert not re.search(r"\(default[^)]*\)\s*\[default", text)  # a default said twice
    for name in [f.name for f in fields(TrainDataArguments)] + sorted(SPANQA_FIELDS):
        assert f"--{name}" in text, name
    for essential in ("--epochs", "--lr", "--batch-size", "--output_dir", "--mixed_precision", "--eval_strategy", "--save_strategy"):
        assert essential in text, essential
    assert "--help-all" in text
    assert "--optim " not in text  # the long tail waits for --help-all
    assert text.index("Data:") < text.index("Training:")


def test_train_help_all_has_every_training_argument_within_80_columns():
    text = _help("train", "--help-all")
    assert "--lr_scheduler_type" in text and "--optim " in text
    assert "(default: None)" not in text
    assert not re.search(r"\(default[^)]*\)\s*\[default", text)
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


def test_train_options_work_as_before_the_help():
    from spanqa.jobs.arguments import parse_train_args

    data, args = parse_train_args(["-m", "tiny", "--train", "t.json", "--epochs", "3", "--batch-size", "4", "--no_mixed_precision"])
    assert (data.model, data.train_data, args.num_train_epochs, args.per_device_train_batch_size) == ("tiny", "t.json", 3.0, 4)
    assert (args.bf16, args.fp16) == (False, False)  # --no_mixed_precision: fp32


@pytest.mark.parametrize(
    "args, hint",
    [
        (["serve", "minilm", "--port", "99999"], "--port"),
        (["ask", "minilm", "Who?", "--contxt", "x"], "--context"),  # click's suggestion is kept
        (["ask", "minilm", "Who?", "--passages", "0"], "--passages"),
        (["ask", "minilm"], "question"),
        (["no-such-command"], "no-such-command"),
        (["train", "--epoch", "3"], "did you mean '--epochs'"),
    ],
)
def test_a_usage_error_is_one_error_line_and_status_1(args, hint):
    result = runner.invoke(app, args, env=NARROW)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert hint in lines[0]
    assert "Traceback" not in result.output


def test_the_installed_command_says_a_usage_error_in_one_line():
    env = {**os.environ, **NARROW, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "spanqa", "ask", "minilm", "Who?", "--contxt", "x"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: "), done.stderr


@pytest.mark.parametrize("args", [[], ["data"], ["--help"]])
def test_no_arguments_prints_the_help_with_status_0(args):
    result = runner.invoke(app, args, env=NARROW)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ") and "Commands:" in result.stdout
    assert not result.stderr
