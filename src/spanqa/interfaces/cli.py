"""The ``spanqa`` command line: each command is a thin wrapper over an importable function.

A mistake the user can fix (a :class:`~spanqa.core.errors.SpanQAError`) prints one
``error: ...`` line and exits with status 1; it never shows a traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from spanqa.core.config import DEFAULTS
from spanqa.core.errors import ConfigError, DataError, SpanQAError
from spanqa.core.io import check_new_file, describe_os_error, read_json, write_json
from spanqa.core.version import __version__

__all__ = ["app", "main"]

F = TypeVar("F", bound=Callable[..., Any])

# click's exceptions as typer raises them (recent typer ships its own copy of click), found through a public name.
_click_errors: Any = importlib.import_module(typer.BadParameter.__module__)


class _Command(TyperCommand):
    """A command whose ``--help`` is plain text wrapped to the terminal (at most 80 columns): an option's
    name is never cut, and the options of each ``rich_help_panel`` form a section of their own."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            default = "Arguments" if param.param_type_name == "argument" else "Options"
            sections.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
        for title, records in sections.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        """The epilog wrapped at spaces only: click's wrapping breaks at hyphens (``--api-key-`` / ``file``)."""
        if not self.epilog:
            return
        import inspect
        import textwrap

        formatter.write_paragraph()
        indent = " " * (formatter.current_indent + 2)
        wrapper = textwrap.TextWrapper(max(formatter.width, 40), indent, indent, break_long_words=False, break_on_hyphens=False)
        text = wrapper.fill(inspect.cleandoc(self.epilog))
        formatter.write(text + "\n")


class _Group(TyperGroup):
    """The ``spanqa`` group: a usage mistake, also one click's parser finds (an unknown option, a value out
    of range, a missing argument), is one ``error: ...`` line on stderr and exit status 1, like every
    other error of the command line; ``spanqa`` alone prints the help, status 0."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        run = functools.partial(super().main, args, prog_name, complete_var, windows_expand_args=windows_expand_args, **extra)
        if not standalone_mode:  # the caller handles click's exceptions itself
            return run(standalone_mode=False)
        try:
            status = run(standalone_mode=False)
        except _click_errors.NoArgsIsHelpError as err:  # `spanqa` or `spanqa data` alone: the help is the answer
            typer.echo(err.format_message())
            sys.exit(0)
        except _click_errors.ClickException as err:
            typer.echo(f"error: {_usage_error_line(err)}", err=True)
            sys.exit(1)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)  # an int is typer.Exit's status


def _usage_error_line(err: Any) -> str:
    """click's message of ``err`` on one line, first letter lowercased as spanqa's own errors are, with where to look."""
    message = " ".join(str(err.format_message()).split())
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(err, "ctx", None)
    if isinstance(err, _click_errors.UsageError) and ctx is not None:
        message = f"{message.removesuffix('.')}; see {ctx.command_path} --help"
    return message


class _Typer(typer.Typer):
    """Typer whose commands are :class:`_Command` unless they say otherwise."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="spanqa",
    help="Fine-tune, evaluate and serve extractive question-answering models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=_Group,
)
data_app = _Typer(help="Inspect and convert QA datasets.", no_args_is_help=True, rich_markup_mode=None, cls=_Group)
app.add_typer(data_app, name="data")

VERBOSE_FLAGS = ("--verbose", "-v")


@app.callback()
def _everywhere(
    verbose: bool = typer.Option(
        False, *VERBOSE_FLAGS, envvar="SPANQA_VERBOSE", help="Also show the libraries' notes, load reports and bars, and each step's details."
    ),
) -> None:
    from spanqa.runtime.console import set_verbose

    set_verbose(verbose)


def user_errors(func: F) -> F:
    """Turn a SpanQAError into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _setup_logging()
        try:
            return func(*args, **kwargs)
        except SpanQAError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1) from None
        except FileNotFoundError as err:
            typer.echo(f"error: {err.filename or err}: file not found", err=True)
            raise typer.Exit(1) from None
        except OSError as err:  # a full disk, a read-only folder, a folder given as a file, ...
            typer.echo(f"error: {describe_os_error(err)}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (test runners swap it between calls)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging() -> None:
    root = logging.getLogger("spanqa")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def _source(path: str | Path, columns: str | None, no_answer_marker: str | None, on_mismatch: str) -> Any:
    """The :class:`~spanqa.stages.data.DataSource` of a command's data argument and its --columns,
    --no-answer-marker and --on-mismatch options."""
    from spanqa.stages.data import DataSource

    return DataSource.of(path, columns, no_answer_marker, on_mismatch=on_mismatch)


ColumnsOpt = typer.Option(
    None,
    "--columns",
    "-c",
    help="Column mapping for flat files, ROLE=COLUMN pairs separated by commas. Roles: question, context, id, "
    "title, answers, answer_text, answer_start, answer_end, is_impossible. "
    "Example: context=review,answer_text=human_ans_spans,answer_start=human_ans_indices",
)
MarkerOpt = typer.Option(
    None, "--no-answer-marker", help="Answer text that means 'no answer' (e.g. ANSWERNOTFOUND); also stripped from the end of contexts."
)
MismatchOpt = typer.Option(
    "repair",
    "--on-mismatch",
    help="Answers whose text is not at their offset: 'repair' (search nearby, skip if not found), "
    "'trust' (keep the offsets, take the text from the context) or 'skip'.",
)
LangOpt = typer.Option(
    "squad", "--lang", help="Answer normalisation: 'squad' (official English script) or a language code (MLQA rules: en, es, de, ar, hi, zh, el, ...)."
)
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace the results of an earlier run at the output path.")


# Python types of the option classes' fields (their annotations are strings here), as typer reads them.
_CLI_TYPES: dict[str, Any] = {
    "int": int,
    "int | None": Optional[int],
    "float | None": Optional[float],
    "bool | None": Optional[bool],
    "str | None": Optional[str],
    "BackendName": str,
    "Precision | None": Optional[str],
}


def _field_options(options_class: type, panel: str) -> list[Any]:
    """One ``--name`` option per field of a frozen options class (``AnswerOptions``, ``LoadOptions``),
    declared once there: default, type and help (``metadata["help"]``, and ``metadata["flag"]`` for
    an on/off pair); they reach the command in its ``**options``."""
    import dataclasses
    import inspect

    parameters = []
    for item in dataclasses.fields(options_class):
        names = item.metadata.get("flag", f"--{item.name.replace('_', '-')}")
        option = typer.Option(item.default, names, help=item.metadata["help"], rich_help_panel=panel)
        parameters.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=_CLI_TYPES[str(item.type)]))
    return parameters


def _answer_option_parameters() -> list[Any]:
    from spanqa.reading.options import AnswerOptions

    return _field_options(AnswerOptions, "Answer options")


def _load_option_parameters() -> list[Any]:
    from spanqa.runtime.options import LoadOptions

    return _field_options(LoadOptions, "Model loading")


def _with_options(*groups: Callable[[], list[Any]]) -> Callable[[F], F]:
    """The command also takes the options of ``groups``: its ``**options`` become those parameters."""
    import inspect

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        command.__signature__ = signature.replace(parameters=[*fixed, *(p for group in groups for p in group())])  # type: ignore[attr-defined]
        return command

    return decorate


def _load_options(values: dict[str, Any]) -> Any:
    """The :class:`~spanqa.runtime.options.LoadOptions` among a command's ``**options``."""
    from spanqa.runtime.options import LOAD_OPTION_NAMES, LoadOptions

    return LoadOptions(**{name: values[name] for name in LOAD_OPTION_NAMES})


def _answer_options(values: dict[str, Any]) -> Any:
    """The :class:`~spanqa.reading.options.AnswerOptions` among a command's ``**options``."""
    from spanqa.reading.options import ANSWER_OPTION_NAMES, AnswerOptions

    return AnswerOptions(**{name: values[name] for name in ANSWER_OPTION_NAMES})


@app.command()
@user_errors
def score(
    data: Path = typer.Option(..., "--data", "-d", help="Gold data file (any layout the data stage reads)."),
    predictions: Path = typer.Option(..., "--predictions", "-p", help="Predictions JSON: {id: answer text}."),
    na_probs: Optional[Path] = typer.Option(None, "--na-probs", help="No-answer probabilities JSON: {id: float} (v2)."),
    na_prob_thresh: float = typer.Option(1.0, "--na-prob-thresh", help="Predict 'no answer' when na_prob exceeds this (official default 1.0)."),
    lang: str = LangOpt,
    columns: Optional[str] = ColumnsOpt,
    no_answer_marker: Optional[str] = MarkerOpt,
    on_mismatch: str = MismatchOpt,
    out_file: Optional[Path] = typer.Option(None, "--out-file", "-o", help="Also write the metrics JSON here."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Score a predictions file against gold data with the official SQuAD v1.1/v2.0 definitions."""
    from spanqa.stages.metrics import score_predictions

    if out_file:
        check_new_file(out_file, overwrite)

    dataset = _source(data, columns, no_answer_marker, on_mismatch).load()
    preds = _read_mapping(predictions, read_json, str)
    probs = _read_mapping(na_probs, read_json, float) if na_probs else None
    report = score_predictions(dataset.examples, preds, probs, version_2=dataset.version_2 or None, na_prob_thresh=na_prob_thresh, lang=lang)
    text = json.dumps(report.metrics, indent=2)
    typer.echo(text)
    if out_file:
        write_json(out_file, report.metrics)


def _read_mapping(path: Path, read_json: Callable[[Path], Any], kind: type) -> dict[str, Any]:
    obj = read_json(path)  # names the file when it is a folder, not UTF-8 or not JSON
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object {{id: value}}, got a JSON {type(obj).__name__}")
    for key, value in obj.items():
        if kind is str and not isinstance(value, str):
            raise DataError(f"{path}: id {key!r}: expected an answer string, got {value!r}")
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DataError(f"{path}: id {key!r}: expected a number, got {value!r}")
    return obj


@app.command("evaluate")
@_with_options(_load_option_parameters)
@user_errors
def evaluate_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model folder, alias (minilm) or hub id."),
    data: str = typer.Option(..., "--data", "-d", help="Gold data: a file or a hub dataset NAME[:SPLIT]."),
    output_dir: Path = typer.Option(Path("spanqa-eval"), "--output-dir", "-o", help="Where prediction files and metrics.json go."),
    columns: Optional[str] = ColumnsOpt,
    no_answer_marker: Optional[str] = MarkerOpt,
    on_mismatch: str = MismatchOpt,
    version_2: Optional[bool] = typer.Option(None, "--version-2/--version-1", help="Allow 'no answer' (default: detected from the data)."),
    lang: str = LangOpt,
    max_length: Optional[int] = typer.Option(None, help=f"Window length in tokens (default: the model's spanqa.json, else {DEFAULTS.max_length})."),
    stride: Optional[int] = typer.Option(None, help=f"Overlap between windows in tokens (default: spanqa.json, else {DEFAULTS.stride})."),
    n_best: Optional[int] = typer.Option(None, help=f"Candidates kept per question (default: spanqa.json, else {DEFAULTS.n_best})."),
    max_answer_length: Optional[int] = typer.Option(
        None, help=f"Longest answer in tokens (default: spanqa.json, else {DEFAULTS.max_answer_length})."
    ),
    null_threshold: Optional[float] = typer.Option(
        None, help=f"Answer 'no answer' when null score - best score exceeds this (v2; default: spanqa.json, else {DEFAULTS.null_threshold:g})."
    ),
    tune_threshold: bool = typer.Option(False, "--tune-threshold", help="Find the null threshold that maximises F1 on this data; report both."),
    save_threshold: bool = typer.Option(
        False, "--save-threshold", help="Tune the threshold and store it in the model's spanqa.json (short for --tune-threshold --save)."
    ),
    calibrate: bool = typer.Option(
        False, "--calibrate", help="Fit the score temperature on this data; report the expected calibration error before and after."
    ),
    save: bool = typer.Option(False, "--save", help="Store what --tune-threshold, --calibrate and --index fitted in the model's spanqa.json."),
    index: Optional[Path] = typer.Option(
        None, "--index", help="Also ask every question of a `spanqa index` folder: retrieval recall@1/5/20 and end-to-end EM/F1 beside the gold passage's."
    ),
    passages: int = typer.Option(10, "--passages", min=1, help="With --index: how many retrieved passages the model reads."),
    overwrite: bool = OverwriteOpt,
    **options: Any,
) -> None:
    """Run a QA model over a dataset; write predictions, n-best, null odds and metrics."""
    from spanqa.jobs.evaluate import EvaluationSteps, evaluate
    from spanqa.stages.data import DataSource

    steps = EvaluationSteps(
        tune_threshold=tune_threshold or save_threshold, calibrate=calibrate, save=save or save_threshold, index=index, passages=passages, lang=lang
    )
    source = DataSource.of(data, columns, no_answer_marker, on_mismatch=on_mismatch, version_2=version_2)
    settings = {"max_length": max_length, "stride": stride, "n_best": n_best, "max_answer_length": max_answer_length, "null_threshold": null_threshold}
    load = _load_options(options)
    result = evaluate(model, source, load=load, settings=settings, steps=steps, output_dir=output_dir, overwrite=overwrite, progress=True)
    typer.echo(json.dumps(result.metrics, indent=2))
    if result.tuning is not None:
        t = result.tuning
        typer.echo(
            f"null threshold {t.default_threshold:g}: EM {t.default_metrics['exact']:.2f} F1 {t.default_metrics['f1']:.2f}; "
            f"tuned {t.threshold:.4f}: EM {t.tuned_metrics['exact']:.2f} F1 {t.tuned_metrics['f1']:.2f}",
            err=True,
        )
    if "open_domain" in result.metrics:
        _echo_open_domain(result.metrics)
    typer.echo(f"wrote {output_dir}/predictions.json, nbest_predictions.json, metrics.json", err=True)
    from spanqa.jobs.report import write_report_or_warn

    write_report_or_warn(output_dir)  # announces itself; a figure that cannot be drawn costs only the report


def _echo_open_domain(metrics: dict[str, Any]) -> None:
    """The open-domain summary of `evaluate --index`: recall per method, then EM/F1 with gold and retrieved passages."""
    found = metrics["open_domain"]
    for method, recall in found["retrieval"].items():
        typer.echo(f"{method:<6} " + "  ".join(f"{name} {value:.3f}" for name, value in recall.items() if name.startswith("recall@")), err=True)
    end = found["end_to_end"]
    from spanqa.stages.metrics import headline_exact_match as em

    typer.echo(f"gold passage: EM {em(metrics):.2f} F1 {metrics['f1']:.2f}", err=True)
    for count, scores in found["by_passages"].items():
        typer.echo(f"index ({found['method']}, {count:>2} passage{'s' if count != '1' else ' '}): EM {em(scores):.2f} F1 {scores['f1']:.2f}", err=True)
    fitted = found.get("fitted")
    if fitted:
        typer.echo(
            f"retrieval weight fitted on these questions: {fitted['retrieval_weight']:g} "
            f"(F1 {fitted['f1']:.2f} with {found['passages']} passages, against {end['f1']:.2f}; --save stores it)",
            err=True,
        )


@app.command("report")
@user_errors
def report_cmd(
    run_dir: Path = typer.Argument(..., help="A `spanqa train` output folder (evaluated on its eval/ folder) or a `spanqa evaluate` output folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The HTML file (default: RUN_DIR/report.html); its PNG figures go beside it."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Gold data (default: the data the run was evaluated on, as it recorded)."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model for the tokenizer and windows (default: RUN_DIR when it is a model folder, else the evaluated model)."
    ),
    columns: Optional[str] = ColumnsOpt,
    no_answer_marker: Optional[str] = MarkerOpt,
    on_mismatch: Optional[str] = typer.Option(None, "--on-mismatch", help="Answer mismatch policy for --data (default: the run's)."),
    lang: Optional[str] = typer.Option(None, "--lang", help="Answer normalisation (default: the run's)."),
    worst: int = typer.Option(25, "--worst", min=0, help="How many of the worst errors to show."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out even when it is not an earlier spanqa report."),
) -> None:
    """Write an HTML report of a run: training curves, scores by kind of question, the no-answer threshold curve (v2), the worst errors."""
    from spanqa.jobs.report import write_report
    from spanqa.stages.data import ColumnMapping

    mapping = ColumnMapping.of(columns, no_answer_marker).given() or None
    files = write_report(
        run_dir, out, overwrite=overwrite, data=data, model=model, columns=mapping, on_mismatch=on_mismatch, lang=lang, worst=worst
    )
    typer.echo(f"wrote {files.html} and {len(files.figures)} figure(s): {', '.join(p.name for p in files.figures.values())}")


@data_app.command("check")
@user_errors
def data_check(
    files: list[str] = typer.Argument(..., help="Data files (or hub names) to check."),
    columns: Optional[str] = ColumnsOpt,
    no_answer_marker: Optional[str] = MarkerOpt,
    on_mismatch: str = MismatchOpt,
    model: str = typer.Option("minilm", "--model", "-m", help="Tokenizer for the length statistics."),
    max_length: int = typer.Option(DEFAULTS.max_length, help="Window length for the 'longer than one window' count."),
    max_problems: int = typer.Option(10, help="How many problem rows to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Count examples and unanswerable share, measure lengths in tokens, list rows with problems."""
    from spanqa.runtime.models import load_tokenizer
    from spanqa.stages.datacheck import summarize

    tokenizer = load_tokenizer(model)
    summaries = []
    for name in files:
        dataset = _source(name, columns, no_answer_marker, on_mismatch).load()
        summaries.append(summarize(dataset, tokenizer, max_length=max_length))
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in summaries], indent=2, ensure_ascii=False))
        return
    for summary in summaries:
        typer.echo("\n".join(summary.lines(max_problems)))


@data_app.command("convert")
@user_errors
def data_convert(
    source: str = typer.Argument(..., help="Input file (any supported layout) or hub name."),
    target: Path = typer.Argument(..., help="Output: .json (SQuAD) or .jsonl (flat records)."),
    columns: Optional[str] = ColumnsOpt,
    no_answer_marker: Optional[str] = MarkerOpt,
    on_mismatch: str = MismatchOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Convert any supported layout to SQuAD JSON or JSONL (validated on the way)."""
    (written,) = _write_parts(_source(source, columns, no_answer_marker, on_mismatch), [target], lambda dataset: [dataset.examples], overwrite)
    typer.echo(f"wrote {written} examples to {target}")


def _write_parts(source: Any, targets: list[Path], parts: Callable[[Any], list[list[Any]]], overwrite: bool) -> list[int]:
    """Read ``source``, cut it into ``parts`` and save each part to its target (any layout the data stage
    writes); every target is checked before the data is read. Returns each part's number of questions."""
    from spanqa.stages.data import save_examples

    for target in targets:
        check_new_file(target, overwrite)
    dataset = source.load()
    examples = parts(dataset)
    for part, target in zip(examples, targets):
        save_examples(part, target, version_2=dataset.version_2)
    return [len(part) for part in examples]


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@user_errors
def train_cmd(ctx: typer.Context) -> None:
    """Fine-tune an extractive-QA model; with no options, the embedded default on the sample data.

    Options: spanqa train --help (data, window, decoding and the usual training settings) and
    spanqa train --help-all (also every other TrainingArguments field); each is also settable in a
    --config YAML/JSON file; precedence: defaults < config file < command line.
    """
    from spanqa.jobs.arguments import parse_train_args
    from spanqa.jobs.training import train as run_training
    from spanqa.stages.data import DataSource

    given = list(ctx.args)
    if any(flag in given for flag in VERBOSE_FLAGS):  # `spanqa train --verbose` as well as `spanqa --verbose train`
        from spanqa.runtime.console import set_verbose

        set_verbose(True)
        given = [arg for arg in given if arg not in VERBOSE_FLAGS]
    data, args = parse_train_args(given)
    sources = [
        DataSource.of(path, data.columns, data.no_answer_marker, on_mismatch=data.on_mismatch, split=split) if path is not None else None
        for path, split in ((data.train_data, data.train_split), (data.eval_data, data.eval_split))
    ]
    result = run_training(data.model, *sources, args=args, resume=data.resume, overwrite=data.overwrite)
    if result.metrics:
        shown = {k: round(v, 2) for k, v in result.metrics.items() if k in ("exact", "exact_match", "f1", "HasAns_f1", "NoAns_f1", "best_f1")}
        typer.echo("dev " + "  ".join(f"{k}={v}" for k, v in shown.items()))
        ranking = result.metrics.get("open_domain")
        if ranking:  # the eval data's own paragraphs, as an index: how reading more passages does
            by_count = "  ".join(f"{count}: {scores['f1']:.2f}" for count, scores in ranking["by_passages"].items())
            fitted = ranking["fitted"]
            typer.echo(f"dev F1 from its paragraphs' index by passages read  {by_count}")
            typer.echo(f"saved retrieval weight {fitted['retrieval_weight']:g} (F1 {fitted['f1']:.2f} with 10 passages)")
    typer.echo(f"saved model to {result.output_dir} ({result.global_step} steps, {result.training_seconds / 60:.1f} min)")


@app.command()
@_with_options(_answer_option_parameters, _load_option_parameters)
@user_errors
def ask(
    model: str = typer.Argument(..., help="Model folder, alias or hub id."),
    question: str = typer.Argument(..., help="The question."),
    context: Optional[str] = typer.Option(None, "--context", help="The text to answer from."),
    context_file: Optional[Path] = typer.Option(None, "--context-file", help="Read the text from this file (any length)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    index: Optional[Path] = typer.Option(None, "--index", help="Answer from the passages of this `spanqa index` folder instead of one text."),
    passages: int = typer.Option(10, "--passages", min=1, help="With --index: how many retrieved passages the model reads."),
    **options: Any,
) -> None:
    """Answer one question from a text given inline or in a file, or from a document index (--index)."""
    from spanqa.reading.reader import Reader

    answer, load = _answer_options(options), _load_options(options)
    if index is not None:
        if context is not None or context_file is not None:
            raise ConfigError("--index answers from the index; drop --context / --context-file")
        _ask_index(model, question, index, passages, answer, load, as_json)
        return
    text = _context_text(context, context_file)
    result = Reader.from_pretrained(model, load)(question, text, options=answer)
    ranked = [(f"{_one_line(a.text)}  (score {a.score:.3f}, characters {a.start}-{a.end})", _in_context(text, a.start, a.end)) for a in result.answers]
    _print_answers(result.to_dict(), None if result.answer else result.no_answer_score, ranked, as_json, result.note)


def _print_answers(record: dict[str, Any], no_answer_score: float | None, ranked: list[tuple[str, str]], as_json: bool, note: str | None = None) -> None:
    """`ask`'s output: the JSON ``record``, or "(no answer)" with its probability (None: answered),
    each answer's line with its text in context, and why the list is shorter than --top-k (``note``)."""
    if as_json:
        typer.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    if no_answer_score is not None:
        typer.echo(f"(no answer)  p={no_answer_score:.3f}")
    for rank, (line, in_context) in enumerate(ranked, 1):
        typer.echo(f"{rank}. {line}")
        typer.echo(in_context)
    if note:
        typer.echo(f"({note})")


def _context_text(context: str | None, context_file: Path | None) -> str:
    """The text of `ask`'s --context or --context-file (exactly one of them)."""
    if context is None and context_file is None:
        raise ConfigError(
            "give the text to answer from with --context TEXT or --context-file FILE, "
            "or answer from your documents with --index INDEX (made by: spanqa index DOCS --out INDEX)"
        )
    if context is not None and context_file is not None:
        raise ConfigError("give the text with one of --context TEXT or --context-file FILE, not both")
    if context is not None:
        return context
    assert context_file is not None
    try:
        return context_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{context_file}: not UTF-8 text (byte {err.start}); convert it first, e.g. iconv -t UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"{context_file}: is a folder; --context-file takes a text file") from None


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (blank lines, tabs, line breaks) as one space, for a terminal line."""
    return re.sub(r"\s+", " ", text)


def _in_context(text: str, start: int, end: int, width: int = 60) -> str:
    """``text[start:end]`` in brackets with up to ``width`` characters either side, on one line."""
    left, answer, right = (_one_line(part) for part in (text[max(0, start - width) : start], text[start:end], text[end : end + width]))
    return f"   ...{left}[{answer}]{right}..."


def _ask_index(model: str, question: str, index_dir: Path, passages: int, options: Any, load: Any, as_json: bool) -> None:
    """`ask --index`: retrieve passages, answer across them, print answers with their source offsets."""
    from spanqa.reading.index import Index
    from spanqa.reading.reader import Reader

    index = Index.load(index_dir)  # before the model loads: a wrong folder fails fast
    found = Reader.from_pretrained(model, load).answer_from_index(question, index, passages=passages, options=options)
    ranked = []
    for a in found.answers:
        at = a.start - a.passage.start  # the answer's place in its passage
        line = f"{_one_line(a.text)}  (score {a.score:.3f}, {_where(a)} characters {a.start}-{a.end})"
        ranked.append((line, _in_context(a.passage.text, at, at + len(a.text))))
    _print_answers(found.to_dict(), None if found.answer else found.result.no_answer_score, ranked, as_json, found.result.note)


def _where(answer: Any) -> str:
    """Where an index answer is: its file's name (or its document id for table rows), and its PDF page: ``report.pdf p. 2,``."""
    name = Path(answer.source).name if answer.doc_id == answer.source else answer.doc_id
    return f"{name} p. {answer.page}," if answer.page is not None else name


@app.command("index")
@user_errors
def index_cmd(
    docs: list[Path] = typer.Argument(
        ..., help="Text/Markdown, PDF, HTML or DOCX files, folders of them, JSONL/CSV/TSV/Parquet files or SQuAD JSON files."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="The index folder."),
    append: bool = typer.Option(False, "--append", help="Add documents to an existing index (its passages are kept)."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the text in JSONL/CSV/Parquet files."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Column holding document ids (default: FILE#ROW)."),
    embedding_model: Optional[str] = typer.Option(
        None, "--embedding-model", help="Also store sentence embeddings of this model (e.g. minilm) and fuse them with BM25; none (the default): BM25 only."
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail on any file that cannot be read, instead of skipping it."),
) -> None:
    """Split documents into passages and index them for `spanqa ask --index`.

    PDF, HTML and DOCX files that cannot be read (encrypted, scanned, damaged, no main text) are
    skipped with a reason, unless --strict.
    """
    from spanqa.reading.index import build_index

    model = None if str(embedding_model).lower() == "none" else embedding_model  # --embedding-model none: BM25 only, as without the option
    built = build_index(docs, out, append=append, text_column=text_column, id_column=id_column, embedding_model=model, strict=strict)
    manifest = built.manifest
    skipped = manifest.get("skipped", [])  # each one already named with its reason by the build's warning
    files, documents = manifest.get("files", len(manifest["sources"])), manifest["documents"]
    of_documents = f" of {documents} documents" if documents != files else ""
    summary = f"indexed {files} file{'s' * (files != 1)} ({manifest['passages']} passages{of_documents}) in {out}"
    typer.echo(summary + (f"; skipped {len(skipped)} file{'s' * (len(skipped) != 1)}" if skipped else ""))


@app.command()
@_with_options(_answer_option_parameters, _load_option_parameters)
@user_errors
def predict(
    model: str = typer.Argument(..., help="Model folder, alias or hub id."),
    data: str = typer.Argument(..., help="Questions with contexts: any layout the data stage reads (answers not needed)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL file, one line per question."),
    columns: Optional[str] = ColumnsOpt,
    shard: Optional[str] = typer.Option(
        None, "--shard", help="i/n: answer only the i-th of n equal, consecutive parts (from 0), e.g. one task of a Slurm array or Kubernetes indexed job."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed or interrupted run into OUT from its finished questions."),
    overwrite: bool = OverwriteOpt,
    engine: str = typer.Option(
        "local", "--engine", help="local (this process), or ray: an actor pool on Ray Data, local or the cluster at RAY_ADDRESS; OUT is then a folder."
    ),
    num_actors: int = typer.Option(1, "--num-actors", min=1, help="With --engine ray: model copies answering in parallel."),
    questions_per_batch: int = typer.Option(64, "--questions-per-batch", min=1, help="With --engine ray: questions per Ray batch (one shared pass)."),
    output_format: str = typer.Option("jsonl", "--format", help="With --engine ray: jsonl (the lines of the local engine) or parquet."),
    **options: Any,
) -> None:
    """Answer every question of a data file; JSONL out, streamed, with a progress bar; resumable; or on Ray (--engine ray)."""
    from spanqa.stages.data import DataSource

    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown engine {engine!r}; use local or ray")
    # What both engines ask every question with, how they load the model and read the data.
    answer, load = _answer_options(options), _load_options(options)
    source = DataSource.of(data, columns)
    if engine == "ray":
        from spanqa.jobs.ray_predict import RayRun, predict_with_ray

        if shard is not None or resume:
            raise ConfigError("--shard and --resume are for the local engine; Ray splits and retries the work itself")
        run = RayRun(num_actors=num_actors, batch_size=questions_per_batch, output_format=output_format, overwrite=overwrite)  # type: ignore[arg-type]
        count = predict_with_ray(model, source, out, answer, load, run)
        typer.echo(f"wrote {count} predictions to {out}/")
        return
    from spanqa.jobs.predict import PredictRun, check_output, parse_shard, predict_file
    from spanqa.reading.reader import Reader

    run_local = PredictRun(shard=parse_shard(shard) if shard is not None else None, progress=True, resume=resume, overwrite=overwrite)
    check_output(out, resume=resume, overwrite=overwrite)  # before the model loads
    count = predict_file(Reader.from_pretrained(model, load), source, out, answer, run_local)
    typer.echo(f"wrote {count} predictions to {out}")


@app.command("export")
@user_errors
def export_cmd(
    model: str = typer.Argument(..., help="Model folder, alias or hub id (a PyTorch QA model)."),
    out: Path = typer.Argument(..., help="Folder to create: model.onnx, tokenizer, config.json, spanqa.json."),
    onnx: bool = typer.Option(False, "--onnx", help="Export to ONNX (the one format so far; required)."),
    int8: bool = typer.Option(False, "--int8", help="Quantize to int8 (static, calibrated): ~4x smaller, faster on CPUs, answers may differ slightly."),
    calibration_data: Optional[str] = typer.Option(
        None, "--calibration-data", help="Data file to calibrate --int8 on (default: the model's training data if readable, else the sample data)."
    ),
    calibration_windows: Optional[int] = typer.Option(None, "--calibration-windows", help="Most windows that calibrate --int8 (default 512)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    optimize: bool = typer.Option(True, "--optimize/--no-optimize", help="Fuse attention, LayerNorm and GELU (ONNX Runtime's transformer optimizer)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists and is not empty."),
) -> None:
    """Export a model for ONNX Runtime; `ask`, `predict`, `evaluate` and `serve` load the folder like any model."""
    from spanqa.jobs.export import Int8Options, export_onnx

    if not onnx:
        raise ConfigError("choose the export format: --onnx (the only one so far)")
    calibration: dict[str, Any] = {"calibration_data": calibration_data, "calibration_windows": calibration_windows}
    given = {key: value for key, value in calibration.items() if value is not None}
    int8_options = Int8Options(**given) if given else None
    folder = export_onnx(model, out, int8=int8, int8_options=int8_options, opset=opset, optimize=optimize, overwrite=overwrite)
    size = (folder / "model.onnx").stat().st_size / 1e6
    typer.echo(f"wrote {folder}/model.onnx ({'int8' if int8 else 'fp32'}, {size:.1f} MB) with its tokenizer, config.json and spanqa.json")


def _serve_setting_parameters() -> list[Any]:
    """One keyword parameter per server setting, declared once as the fields of ``ServeSettings``.

    Each is a ``--name`` option (``max_batch`` -> ``--max-batch``) whose help is the field's
    description; None (not given) leaves the setting to ``SPANQA_SERVE_<NAME>`` or its default.
    The values reach ``serve_settings`` as text, so a bad one is its one-line error naming the
    setting. Without the serve extra there are none (``serve`` then says what to install).
    """
    import inspect

    try:
        from spanqa.interfaces.serve.settings import ServeSettings
    except ImportError:
        return []
    metavars: dict[Any, str] = {int: "<int>", float: "<float>"}
    parameters = []
    for name, info in ServeSettings.model_fields.items():
        default = "auto" if info.default is None else info.default
        option = typer.Option(
            None,
            f"--{name.replace('_', '-')}",
            help=f"{info.description} (default: {default})",
            metavar=metavars.get(info.annotation, "<int|auto>"),
            rich_help_panel="Server settings",
        )
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[str]))
    return parameters


@app.command(
    epilog="Each server setting can also be set as SPANQA_SERVE_<NAME> in the environment (SPANQA_SERVE_MAX_BATCH=64); "
    "an option given here beats the variable. The API key can come from SPANQA_API_KEY instead of --api-key-file. "
    "Bound to a loopback address, only the Host names localhost, 127.0.0.1 and [::1] are answered (and those of "
    "--allowed-hosts); bound to another address, any Host is answered unless --allowed-hosts names them (with a warning, and another "
    "when no API key is set).",
)
@_with_options(_load_option_parameters, _serve_setting_parameters)
@user_errors
def serve(
    model: Optional[str] = typer.Argument(None, help="Model folder (PyTorch safetensors or `spanqa export` ONNX), alias or hub id."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free port)."),
    list_settings: bool = typer.Option(False, "--list-settings", help="Print the server settings with their defaults and exit."),
    index: Optional[Path] = typer.Option(
        None, "--index", help="Answer questions sent without a context from the passages of this `spanqa index` folder."
    ),
    allowed_hosts: Optional[str] = typer.Option(
        None, "--allowed-hosts", metavar="NAMES", rich_help_panel="Access",
        help="Host names answered besides the local ones, comma-separated (qa.example.com,*.example.org; * for any); "
        "other names get 400.",
    ),
    api_key_file: Optional[Path] = typer.Option(
        None, "--api-key-file", metavar="PATH", rich_help_panel="Access",
        help="File whose first line is the API key every POST must send (Authorization: Bearer KEY or X-API-Key: KEY); "
        "default: $SPANQA_API_KEY, else no key.",
    ),
    docs: bool = typer.Option(
        False, "--docs", rich_help_panel="Access",
        help="Serve Swagger UI at /docs from local files (needs fastapi-offline); /openapi.json is always served.",
    ),
    **options: Any,
) -> None:
    """Serve the model over HTTP: POST /answer, GET /health, /metrics, /openapi.json, and a web page at /."""
    from spanqa.interfaces.serve import ENV_PREFIX, ServeSettings, run_server, serve_settings
    from spanqa.interfaces.serve.access import access_options

    if list_settings:
        for name, info in ServeSettings.model_fields.items():
            default = "auto" if info.default is None else info.default
            typer.echo(f"--{name.replace('_', '-')} / {ENV_PREFIX}{name.upper()} (default {default}): {info.description}")
        return
    if model is None:
        raise ConfigError("give the model to serve: spanqa serve MODEL (a folder, alias such as minilm, or hub id)")
    load = _load_options(options)
    # explicit options beat SPANQA_SERVE_* (None: not given)
    server_settings = serve_settings(**{name: value for name, value in options.items() if name in ServeSettings.model_fields})
    access = access_options(allowed_hosts, api_key_file, docs)
    run_server(model, host=host, port=port, settings=server_settings, load=load, index=index, access=access)


@data_app.command("split")
@user_errors
def data_split(
    source: str = typer.Argument(..., help="Input file (any supported layout)."),
    head: Path = typer.Argument(..., help="Output for the first articles (.json or .jsonl)."),
    tail: Path = typer.Argument(..., help="Output for the remaining articles."),
    articles: int = typer.Option(..., "--articles", help="How many articles (titles, in file order) go to HEAD."),
    columns: Optional[str] = ColumnsOpt,
    no_answer_marker: Optional[str] = MarkerOpt,
    on_mismatch: str = MismatchOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Split by article so no paragraph is in both parts (e.g. XQuAD: 36 to train, 12 to evaluate)."""

    def by_article(dataset: Any) -> list[list[Any]]:
        from spanqa.stages.data import split_by_title

        first, rest = split_by_title(dataset, articles)
        if not first.examples or not rest.examples:
            raise ConfigError(f"--articles {articles} leaves one part empty ({len(first)} / {len(rest)} questions)")
        return [first.examples, rest.examples]

    first, rest = _write_parts(_source(source, columns, no_answer_marker, on_mismatch), [head, tail], by_article, overwrite)
    typer.echo(f"wrote {first} questions to {head} and {rest} to {tail}")


@app.command()
def version() -> None:
    """Print the spanqa version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
