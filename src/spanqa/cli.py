"""The ``spanqa`` command line: each command is a thin wrapper over an importable function.

A mistake the user can fix (a :class:`~spanqa.errors.SpanQAError`) prints one
``error: ...`` line and exits with status 1; it never shows a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from .config import DEFAULTS
from .errors import SpanQAError

__all__ = ["app", "main"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="spanqa",
    help="Fine-tune, evaluate and serve extractive question-answering models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and convert QA datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


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
            from .io import describe_os_error

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


def _columns(columns: str | None, no_answer_marker: str | None) -> dict[str, str]:
    from .data import parse_columns

    mapping = parse_columns(columns)
    if no_answer_marker:
        mapping["no_answer_marker"] = no_answer_marker
    return mapping


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
HandleImpossibleOpt = typer.Option(
    None, "--handle-impossible/--always-answer", help="Allow 'no answer' (default: as the model was trained)."
)
LangOpt = typer.Option(
    "squad", "--lang", help="Answer normalisation: 'squad' (official English script) or a language code (MLQA rules: en, es, de, ar, hi, zh, el, ...)."
)
BackendOpt = typer.Option(
    "auto", "--backend", help="What runs the model: 'auto' (ONNX Runtime for a `spanqa export` folder, else PyTorch), 'torch' or 'onnx'."
)
ScoreThresholdOpt = typer.Option(
    None, "--score-threshold", help="Drop answers whose score (probability) is below this; none left means 'no answer' (default: the model's)."
)
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace the results of an earlier run at the output path.")
DtypeOpt = typer.Option(
    None, "--dtype", help="PyTorch precision: bf16, fp16 or fp32 (default: bf16 on GPUs that support it, else fp32)."
)


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
    from .data import load_examples
    from .io import check_new_file, read_json, write_json
    from .metrics import score_predictions

    if out_file:
        check_new_file(out_file, overwrite)

    dataset = load_examples(data, columns=_columns(columns, no_answer_marker), on_mismatch=on_mismatch)  # type: ignore[arg-type]
    preds = _read_mapping(predictions, read_json, str)
    probs = _read_mapping(na_probs, read_json, float) if na_probs else None
    report = score_predictions(dataset.examples, preds, probs, version_2=dataset.version_2 or None, na_prob_thresh=na_prob_thresh, lang=lang)
    text = json.dumps(report.metrics, indent=2)
    typer.echo(text)
    if out_file:
        write_json(out_file, report.metrics)


def _read_mapping(path: Path, read_json: Callable[[Path], Any], kind: type) -> dict[str, Any]:
    from .errors import DataError

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
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    max_length: Optional[int] = typer.Option(None, help=f"Window length in tokens (default: the model's spanqa.json, else {DEFAULTS.max_length})."),
    stride: Optional[int] = typer.Option(None, help=f"Overlap between windows in tokens (default: spanqa.json, else {DEFAULTS.stride})."),
    n_best: Optional[int] = typer.Option(None, help=f"Candidates kept per question (default: spanqa.json, else {DEFAULTS.n_best})."),
    max_answer_length: Optional[int] = typer.Option(None, help=f"Longest answer in tokens (default: spanqa.json, else {DEFAULTS.max_answer_length})."),
    null_threshold: Optional[float] = typer.Option(
        None, help=f"Answer 'no answer' when null score - best score exceeds this (v2; default: spanqa.json, else {DEFAULTS.null_threshold:g})."
    ),
    tune_threshold: bool = typer.Option(False, "--tune-threshold", help="Find the null threshold that maximises F1 on this data; report both."),
    save_threshold: bool = typer.Option(
        False, "--save-threshold", help="Tune the threshold (implies --tune-threshold) and store it in the model's spanqa.json."
    ),
    calibrate: bool = typer.Option(
        False, "--calibrate", help="Fit the score temperature on this data; report the expected calibration error before and after."
    ),
    save: bool = typer.Option(False, "--save", help="Store what --tune-threshold / --calibrate found in the model's spanqa.json."),
    index: Optional[Path] = typer.Option(
        None, "--index", help="Also ask every question of a `spanqa index` folder: retrieval recall@1/5/20 and end-to-end EM/F1 beside the gold passage's."
    ),
    passages: int = typer.Option(10, "--passages", min=1, help="With --index: how many retrieved passages the model reads."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: cuda if available)."),
    backend: str = BackendOpt,
    dtype: Optional[str] = DtypeOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Run a QA model over a dataset; write predictions, n-best, null odds and metrics."""
    from .evaluate import evaluate

    result = evaluate(
        model,
        data,
        output_dir=output_dir,
        columns=_columns(columns, no_answer_marker),
        on_mismatch=on_mismatch,  # type: ignore[arg-type]
        version_2=version_2,
        lang=lang,
        batch_size=batch_size,
        device=device,
        backend=backend,  # type: ignore[arg-type]  # checked by Reader.from_pretrained
        dtype=dtype,  # type: ignore[arg-type]
        max_length=max_length,
        stride=stride,
        n_best=n_best,
        max_answer_length=max_answer_length,
        null_threshold=null_threshold,
        tune_threshold=tune_threshold,
        save_threshold=save_threshold,
        calibrate=calibrate,
        save=save,
        overwrite=overwrite,
        progress=True,
        index=index,
        passages=passages,
    )
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
    from .report import write_report_or_warn

    report = write_report_or_warn(output_dir)  # a figure that cannot be drawn costs only the report
    if report is not None:
        typer.echo(f"wrote {report.html} (open it in a browser)", err=True)


def _echo_open_domain(metrics: dict[str, Any]) -> None:
    """The open-domain summary of `evaluate --index`: recall per method, then EM/F1 with gold and retrieved passages."""
    found = metrics["open_domain"]
    for method, recall in found["retrieval"].items():
        typer.echo(f"{method:<6} " + "  ".join(f"{name} {value:.3f}" for name, value in recall.items() if name.startswith("recall@")), err=True)
    end = found["end_to_end"]

    def em(scores: dict[str, Any]) -> float:
        return float(scores.get("exact_match", scores.get("exact", 0.0)))  # SQuAD v1.1 and v2.0 name it differently

    typer.echo(
        f"gold passage: EM {em(metrics):.2f} F1 {metrics['f1']:.2f}; "
        f"index ({found['method']}, {found['passages']} passages): EM {em(end):.2f} F1 {end['f1']:.2f}",
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
    from .report import write_report

    mapping = _columns(columns, no_answer_marker) or None
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
    from .data import load_examples
    from .datacheck import summarize
    from .models import load_tokenizer

    tokenizer = load_tokenizer(model)
    summaries = []
    for name in files:
        dataset = load_examples(name, columns=_columns(columns, no_answer_marker), on_mismatch=on_mismatch)  # type: ignore[arg-type]
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
    from .data import load_examples, save_examples
    from .io import check_new_file

    check_new_file(target, overwrite)
    dataset = load_examples(source, columns=_columns(columns, no_answer_marker), on_mismatch=on_mismatch)  # type: ignore[arg-type]
    save_examples(dataset.examples, target, version_2=dataset.version_2)
    typer.echo(f"wrote {len(dataset)} examples to {target}")


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@user_errors
def train_cmd(ctx: typer.Context) -> None:
    """Fine-tune an extractive-QA model; with no options, the embedded default on the sample data.

    Options: spanqa train --help (every TrainingArguments field, plus data, window and decoding settings;
    also settable in a --config YAML/JSON file; precedence: defaults < config file < command line).
    """
    from .arguments import parse_train_args
    from .data import parse_columns
    from .training import train as run_training

    data, args = parse_train_args(list(ctx.args))
    result = run_training(
        data.model,
        data.train_data,
        data.eval_data,
        args=args,
        columns=parse_columns(data.columns),
        no_answer_marker=data.no_answer_marker,
        on_mismatch=data.on_mismatch,
        train_split=data.train_split,
        eval_split=data.eval_split,
        resume=data.resume,
        overwrite=data.overwrite,
    )
    if result.metrics:
        shown = {k: round(v, 2) for k, v in result.metrics.items() if k in ("exact", "exact_match", "f1", "HasAns_f1", "NoAns_f1", "best_f1")}
        typer.echo("dev " + "  ".join(f"{k}={v}" for k, v in shown.items()))
    typer.echo(f"saved model to {result.output_dir} ({result.global_step} steps, {result.training_seconds / 60:.1f} min)")


@app.command()
@user_errors
def ask(
    model: str = typer.Argument(..., help="Model folder, alias or hub id."),
    question: str = typer.Argument(..., help="The question."),
    context: Optional[str] = typer.Option(None, "--context", help="The text to answer from."),
    context_file: Optional[Path] = typer.Option(None, "--context-file", help="Read the text from this file (any length)."),
    top_k: int = typer.Option(1, "--top-k", help="How many answers to show."),
    max_answer_length: Optional[int] = typer.Option(None, help="Longest answer in tokens."),
    handle_impossible: Optional[bool] = HandleImpossibleOpt,
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda if available)."),
    backend: str = BackendOpt,
    dtype: Optional[str] = DtypeOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    score_threshold: Optional[float] = ScoreThresholdOpt,
    index: Optional[Path] = typer.Option(None, "--index", help="Answer from the passages of this `spanqa index` folder instead of one text."),
    passages: int = typer.Option(10, "--passages", min=1, help="With --index: how many retrieved passages the model reads."),
) -> None:
    """Answer one question from a text given inline or in a file, or from a document index (--index)."""
    from .errors import ConfigError
    from .reader import QARequest, Reader

    if index is not None:
        if context is not None or context_file is not None:
            raise ConfigError("--index answers from the index; drop --context / --context-file")
        _ask_index(model, question, index, passages, top_k=top_k, max_answer_length=max_answer_length, handle_impossible=handle_impossible,
                   score_threshold=score_threshold, as_json=as_json, device=device, backend=backend, dtype=dtype)
        return
    if (context is None) == (context_file is None):
        raise ConfigError("give the text with exactly one of --context TEXT or --context-file FILE")
    if context_file is not None:
        try:
            context = context_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{context_file}: not UTF-8 text (byte {err.start}); convert it first, e.g. iconv -t UTF-8") from None
        except IsADirectoryError:
            raise ConfigError(f"{context_file}: is a folder; --context-file takes a text file") from None
    reader = Reader.from_pretrained(model, device=device, backend=backend, dtype=dtype)  # type: ignore[arg-type]  # checked there
    request = QARequest(
        question, context, top_k=top_k, max_answer_length=max_answer_length, handle_impossible=handle_impossible, score_threshold=score_threshold
    )
    result = reader.answer_batch([request])[0]
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    if result.answer is None:
        typer.echo(f"(no answer)  p={result.no_answer_score:.3f}")
    for rank, answer in enumerate(result.answers, 1):
        assert context is not None
        typer.echo(f"{rank}. {answer.text}  (score {answer.score:.3f}, characters {answer.start}-{answer.end})")
        typer.echo(_in_context(context, answer.start, answer.end))


def _in_context(text: str, start: int, end: int, width: int = 60) -> str:
    """``text[start:end]`` in brackets with up to ``width`` characters either side, on one line."""
    left = text[max(0, start - width) : start].replace("\n", " ")
    right = text[end : end + width].replace("\n", " ")
    return f"   ...{left}[{text[start:end]}]{right}..."


def _ask_index(model: str, question: str, index_dir: Path, passages: int, *, as_json: bool, device: Optional[str], backend: str,
               dtype: Optional[str], **options: Any) -> None:
    """`ask --index`: retrieve passages, answer across them, print answers with their source offsets."""
    from .index import Index, answer_from_index
    from .reader import Reader

    index = Index.load(index_dir)  # before the model loads: a wrong folder fails fast
    reader = Reader.from_pretrained(model, device=device, backend=backend, dtype=dtype)  # type: ignore[arg-type]  # checked there
    found = answer_from_index(reader, index, question, passages=passages, **options)
    if as_json:
        typer.echo(json.dumps(found.to_dict(), ensure_ascii=False, indent=2))
        return
    if found.answer is None:
        typer.echo(f"(no answer)  p={found.result.no_answer_score:.3f}")
    for rank, answer in enumerate(found.answers, 1):
        typer.echo(f"{rank}. {answer.text}  (score {answer.score:.3f}, {answer.doc_id} characters {answer.start}-{answer.end})")
        at = answer.start - answer.passage.start  # the answer's place in its passage
        typer.echo(_in_context(answer.passage.text, at, at + len(answer.text)))


@app.command("index")
@user_errors
def index_cmd(
    docs: list[Path] = typer.Argument(..., help="Text/Markdown files, folders of them, JSONL/CSV/TSV/Parquet files or SQuAD JSON files."),
    out: Path = typer.Option(..., "--out", "-o", help="The index folder."),
    append: bool = typer.Option(False, "--append", help="Add documents to an existing index (its passages are kept)."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the text in JSONL/CSV/Parquet files."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="Column holding document ids (default: FILE#ROW)."),
    embedding_model: Optional[str] = typer.Option(
        None, "--embedding-model", help="Also store sentence embeddings of this model (e.g. minilm) and fuse them with BM25."
    ),
) -> None:
    """Split documents into passages and index them for `spanqa ask --index`."""
    from .index import build_index

    built = build_index(docs, out, append=append, text_column=text_column, id_column=id_column, embedding_model=embedding_model)
    typer.echo(f"indexed {built.manifest['passages']} passages of {built.manifest['documents']} documents in {out}")

@app.command()
@user_errors
def predict(
    model: str = typer.Argument(..., help="Model folder, alias or hub id."),
    data: str = typer.Argument(..., help="Questions with contexts: any layout the data stage reads (answers not needed)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL file, one line per question."),
    columns: Optional[str] = ColumnsOpt,
    top_k: int = typer.Option(1, "--top-k", help="Answers kept per question."),
    max_answer_length: Optional[int] = typer.Option(None, help="Longest answer in tokens."),
    handle_impossible: Optional[bool] = HandleImpossibleOpt,
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda if available)."),
    backend: str = BackendOpt,
    dtype: Optional[str] = DtypeOpt,
    score_threshold: Optional[float] = ScoreThresholdOpt,
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
) -> None:
    """Answer every question of a data file; JSONL out, streamed, with a progress bar; resumable; or on Ray (--engine ray)."""
    from .errors import ConfigError
    from .predict import check_output, parse_shard, predict_file
    from .reader import Reader

    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown engine {engine!r}; use local or ray")
    # What both engines ask every question with, and how they read the data and treat OUT.
    asked: dict[str, Any] = dict(
        columns=_columns(columns, None), top_k=top_k, max_answer_length=max_answer_length, handle_impossible=handle_impossible,
        score_threshold=score_threshold, overwrite=overwrite,
    )
    if engine == "ray":
        from .ray_predict import predict_with_ray

        if shard is not None or resume:
            raise ConfigError("--shard and --resume are for the local engine; Ray splits and retries the work itself")
        count = predict_with_ray(
            model, data, out, **asked, num_actors=num_actors, batch_size=questions_per_batch, window_batch_size=batch_size,
            device=device, backend=backend, dtype=dtype, output_format=output_format,  # type: ignore[arg-type]  # checked there
        )
        typer.echo(f"wrote {count} predictions to {out}/")
        return
    part = parse_shard(shard) if shard is not None else None
    check_output(out, resume=resume, overwrite=overwrite)  # before the model loads
    reader = Reader.from_pretrained(model, device=device, batch_size=batch_size, backend=backend, dtype=dtype)  # type: ignore[arg-type]  # checked there
    count = predict_file(reader, data, out, **asked, shard=part, progress=True, resume=resume)
    typer.echo(f"wrote {count} predictions to {out}")


@app.command("export")
@user_errors
def export_cmd(
    model: str = typer.Argument(..., help="Model folder, alias or hub id (a PyTorch QA model)."),
    out: Path = typer.Argument(..., help="Folder to create: model.onnx, tokenizer, config.json, spanqa.json."),
    onnx: bool = typer.Option(False, "--onnx", help="Export to ONNX (the one format so far; required)."),
    int8: bool = typer.Option(False, "--int8", help="Quantize the weights to int8: ~4x smaller, faster on CPUs, answers may differ slightly."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset version."),
    optimize: bool = typer.Option(True, "--optimize/--no-optimize", help="Fuse attention, LayerNorm and GELU (ONNX Runtime's transformer optimizer)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists and is not empty."),
) -> None:
    """Export a model for ONNX Runtime; `ask`, `predict`, `evaluate` and `serve` load the folder like any model."""
    from .errors import ConfigError
    from .export import export_onnx

    if not onnx:
        raise ConfigError("choose the export format: --onnx (the only one so far)")
    folder = export_onnx(model, out, int8=int8, opset=opset, optimize=optimize, overwrite=overwrite)
    size = (folder / "model.onnx").stat().st_size / 1e6
    typer.echo(f"wrote {folder}/model.onnx ({'int8' if int8 else 'fp32'}, {size:.1f} MB) with its tokenizer, config.json and spanqa.json")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Limits, micro-batching and parallelism: any server setting as --name value (e.g. --max-batch 64 "
    "--request-timeout-s 10 --workers 2), or SPANQA_SERVE_<NAME> in the environment; --list-settings shows them all.",
)
@user_errors
def serve(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help="Model folder (PyTorch safetensors or `spanqa export` ONNX), alias or hub id."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free port)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda if available)."),
    backend: str = typer.Option("auto", "--backend", help="auto (ONNX when the folder holds model.onnx), torch or onnx."),
    list_settings: bool = typer.Option(False, "--list-settings", help="Print the server settings with their defaults and exit."),
    index: Optional[Path] = typer.Option(
        None, "--index", help="Answer questions sent without a context from the passages of this `spanqa index` folder."
    ),
    passages: Optional[int] = typer.Option(
        None, "--passages", min=1, help="With --index: how many retrieved passages the model reads per question (default 10)."
    ),
) -> None:
    """Serve the model over HTTP: POST /answer, GET /health, /metrics, /docs, and a web page at /."""
    from .serve import ENV_PREFIX, ServeSettings, run_server, serve_settings

    if list_settings:
        for name, info in ServeSettings.model_fields.items():
            typer.echo(f"--{name.replace('_', '-')} / {ENV_PREFIX}{name.upper()} (default {info.default}): {info.description}")
        return
    if model is None:
        from .errors import ConfigError

        raise ConfigError("give the model to serve: spanqa serve MODEL (a folder, alias such as minilm, or hub id)")
    # --passages is also the `passages` server setting (SPANQA_SERVE_PASSAGES); an explicit option beats the environment.
    settings = serve_settings(**_setting_overrides(list(ctx.args)), passages=passages)
    run_server(model, host=host, port=port, settings=settings, device=device, backend=backend, index=index)


def _setting_overrides(tokens: list[str]) -> dict[str, str]:
    """``--name value`` / ``--name=value`` pairs as ``{name: value}``; the settings class validates the values."""
    from .errors import ConfigError

    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        name, eq, value = tokens[i].partition("=")
        if not name.startswith("--") or (not eq and i + 1 >= len(tokens)):
            raise ConfigError(f"unexpected argument {tokens[i]!r}; server settings look like --name value (see --list-settings)")
        if not eq:
            value, i = tokens[i + 1], i + 1
        out[name[2:].replace("-", "_")] = value
        i += 1
    return out


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
    from .data import load_examples, save_examples, split_by_title
    from .errors import ConfigError
    from .io import check_new_file

    check_new_file(head, overwrite)
    check_new_file(tail, overwrite)

    dataset = load_examples(source, columns=_columns(columns, no_answer_marker), on_mismatch=on_mismatch)  # type: ignore[arg-type]
    first, rest = split_by_title(dataset, articles)
    if not first.examples or not rest.examples:
        raise ConfigError(f"--articles {articles} leaves one part empty ({len(first)} / {len(rest)} questions)")
    save_examples(first.examples, head, version_2=dataset.version_2)
    save_examples(rest.examples, tail, version_2=dataset.version_2)
    typer.echo(f"wrote {len(first)} questions to {head} and {len(rest)} to {tail}")


@app.command()
def version() -> None:
    """Print the spanqa version."""
    from . import __version__

    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
