"""Run reports: how training went and where the model fails, as one self-contained HTML file.

``spanqa report RUN_DIR`` (also run at the end of ``spanqa train`` and ``spanqa evaluate``)
reads a run's evaluation files (:func:`spanqa.jobs.evaluation_files.write_prediction_files`), its gold data
and the Trainer's log history (``trainer_state.json``), and writes ``report.html`` with every
figure embedded, and the figures as PNGs beside it (``report-training.png``,
``report-breakdown.png`` and, for v2 data, ``report-threshold.png``).

Nothing is computed twice: scores are the official ones (:mod:`spanqa.stages.metrics`), the
no-answer threshold curve is :func:`spanqa.jobs.scoring.null_threshold_curve` (the one
``spanqa evaluate --tune-threshold`` searches, so its maximum is the tuned F1), and context
lengths and window edges come from :mod:`spanqa.stages.features` with the model's tokenizer and the
run's window settings.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.core.config import SpanQAConfig, WindowConfig
from spanqa.core.errors import ConfigError, DataError, first_line, near_path
from spanqa.core.io import atomic_open, check_new_file, read_json
from spanqa.core.version import __version__
from spanqa.jobs.evaluation_files import REPORT_FIGURES, REPORT_NAME, is_report_file, read_prediction_files
from spanqa.jobs.scoring import ThresholdCurve, ThresholdTuning, null_threshold_curve, score_decoded, tune_null_threshold
from spanqa.stages.data import QADataset, QAExample
from spanqa.stages.decode import ExamplePrediction
from spanqa.stages.metrics import QuestionScore

__all__ = [
    "REPORT_NAME",
    "QUESTION_WORDS",
    "Breakdown",
    "BreakdownRow",
    "ErrorCase",
    "ThresholdReport",
    "RunReport",
    "ReportFiles",
    "question_word",
    "breakdown",
    "collect_report",
    "draw_figures",
    "render_html",
    "breakdown_markdown",
    "write_report",
    "write_report_or_warn",
    "is_report_file",
]

logger = logging.getLogger(__name__)

FIGURES = REPORT_FIGURES
QUESTION_WORDS = ("what", "who", "when", "where", "which", "how", "why")
_WORD_FORMS = {"whom": "who", "whose": "who"}
_GENERATOR = "spanqa report"
_FIGURES_META = "spanqa-figures"  # the figures a report wrote beside it: the only PNGs a later report deletes
EXCERPT_CHARS = 160
"""Context characters shown either side of the predicted and gold spans of an error."""


# --------------------------------------------------------------------------- what a report holds


@dataclass(frozen=True)
class BreakdownRow:
    """One group of questions: how many, and their EM and F1 in percent."""

    label: str
    count: int
    exact: float
    f1: float


@dataclass(frozen=True)
class Breakdown:
    """Scores per group of questions (by question word, answer length, ...)."""

    key: str
    title: str
    column: str
    rows: tuple[BreakdownRow, ...]


@dataclass(frozen=True)
class ErrorCase:
    """A wrong answer, with where the predicted and the gold span are in the context."""

    id: str
    question: str
    context: str
    prediction: str
    prediction_span: tuple[int, int] | None
    gold: tuple[str, ...]
    gold_span: tuple[int, int] | None
    exact: float
    f1: float
    score: float | None


@dataclass(frozen=True)
class ThresholdReport:
    """The v2 scores against the no-answer threshold, with the default and the tuned threshold."""

    curve: ThresholdCurve
    tuning: ThresholdTuning

    @property
    def best_f1(self) -> float:
        """The curve's maximum F1 (what ``spanqa evaluate --tune-threshold`` reports)."""
        return float(np.max(self.curve.f1))


@dataclass
class RunReport:
    """Everything a report shows, before it is drawn."""

    name: str
    run_dir: Path
    eval_dir: Path
    model: str
    data: str
    version_2: bool
    questions: int
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    breakdowns: list[Breakdown]
    errors: list[ErrorCase]
    threshold: ThresholdReport | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote."""

    html: Path
    figures: dict[str, Path]
    report: RunReport


# --------------------------------------------------------------------------- breakdowns


def question_word(question: str) -> str:
    """The question's first wh-word (``whom``/``whose`` count as ``who``), or ``other``.

    Args:
        question: The question text.
    """
    for word in re.findall(r"[a-z]+", question.lower()):
        word = _WORD_FORMS.get(word, word)
        if word in QUESTION_WORDS:
            return word
    return "other"


def _answer_length(example: QAExample) -> str:
    if example.is_impossible:
        return "no answer"
    words = len(example.answers[0].text.split())
    for top, label in ((1, "1"), (2, "2"), (3, "3"), (5, "4-5"), (10, "6-10")):
        if words <= top:
            return label
    return "11+"


_LENGTH_ORDER = ("1", "2", "3", "4-5", "6-10", "11+", "no answer")


def breakdown(key: str, title: str, column: str, labels: Sequence[str], questions: Sequence[QuestionScore], order: Sequence[str]) -> Breakdown:
    """Mean EM and F1 (in percent) of the questions of each label, in ``order`` (empty groups left out).

    Args:
        key: A short name (used in HTML ids).
        title: The table's caption.
        column: The header of the label column.
        labels: Each question's group, in the order of ``questions``.
        questions: The scored questions.
        order: The groups in the order to show them.
    """
    rows = []
    for label in order:
        chosen = [q for q, group in zip(questions, labels) if group == label]
        if chosen:
            exact = 100.0 * sum(q.exact for q in chosen) / len(chosen)
            f1 = 100.0 * sum(q.f1 for q in chosen) / len(chosen)
            rows.append(BreakdownRow(label, len(chosen), exact, f1))
    return Breakdown(key, title, column, tuple(rows))


def _context_breakdowns(examples: Sequence[QAExample], questions: Sequence[QuestionScore], tokenizer: Any, window: Any) -> list[Breakdown]:
    """By context length in tokens, and by where the gold answer fell among the windows."""
    from spanqa.stages.features import answer_windows, build_features

    contexts = tokenizer([ex.context for ex in examples], add_special_tokens=False, verbose=False)["input_ids"]
    tokens = [len(ids) for ids in contexts]
    size = window.max_length
    edges = ((size // 2, f"<= {size // 2}"), (size, f"{size // 2 + 1}-{size}"), (2 * size, f"{size + 1}-{2 * size}"))
    length_labels = [next((label for top, label in edges if n <= top), f"> {2 * size}") for n in tokens]
    length_order = [label for _, label in edges] + [f"> {2 * size}"]

    features = build_features(examples, tokenizer, window)
    windows, whole, cut = answer_windows(examples, features)
    place = []
    for ex, count, inside, edge in zip(examples, windows, whole, cut):
        if count <= 1:
            place.append("context in one window")
        elif ex.is_impossible:
            place.append("several windows, no answer")
        elif not inside:
            place.append("answer in no window whole")
        elif edge:
            place.append("answer across a window edge")
        else:
            place.append("answer clear of window edges")
    place_order = ("context in one window", "answer clear of window edges", "answer across a window edge", "answer in no window whole",
                   "several windows, no answer")
    return [
        breakdown("context_tokens", f"By context length in tokens (windows of {size} tokens, stride {window.stride})", "context length (tokens)",
                  length_labels, questions, length_order),
        breakdown("windows", "By where the gold answer falls among the windows", "answer position in windows", place, questions, place_order),
    ]


# --------------------------------------------------------------------------- collecting a run


def _read_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object, got a JSON {type(obj).__name__}")
    return obj


def _find_eval_dir(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        if run_dir.exists():
            raise DataError(f"{run_dir}: is a file; give the folder of a `spanqa train` or `spanqa evaluate` run")
        raise DataError(f"{run_dir}: no such run folder{near_path(run_dir, folders_only=True)}")
    for folder in (run_dir, run_dir / "eval"):
        if (folder / "predictions.json").is_file():
            return folder
    raise DataError(
        f"{run_dir}: no predictions.json (in it or in {run_dir / 'eval'}); give a folder written by `spanqa evaluate` "
        "or by `spanqa train` with evaluation data"
    )


def _training_folder(run_dir: Path, training: Mapping[str, Any]) -> Path | None:
    """The folder ``spanqa train`` ran in, from the output folder it was given (relative paths were relative to it)."""
    given = (training.get("training") or {}).get("output_dir")
    if not isinstance(given, str) or Path(given).is_absolute():
        return None
    parts = Path(given).parts
    here = run_dir.resolve()
    if parts and here.parts[-len(parts):] == parts:
        return Path(*here.parts[: -len(parts)])
    return None


def _gold_source(source: str, run_dir: Path, training: Mapping[str, Any]) -> str:
    """A recorded data path as it can be read from here: as given, else relative to where training ran."""
    if Path(source).exists() or Path(source).is_absolute():
        return source
    base = _training_folder(run_dir, training)
    if base is not None and (base / source).exists():
        return str(base / source)
    return source


def _load_gold(
    run_dir: Path, evaluation: Mapping[str, Any], training: Mapping[str, Any], data: str | Path | None,
    columns: Mapping[str, str] | None, on_mismatch: str | None, split: str | None,
) -> Any:
    from spanqa.stages.data import load_examples

    recorded = evaluation if "data" in evaluation else {
        "data": training.get("eval_data"), "columns": training.get("columns"), "on_mismatch": training.get("on_mismatch"),
    }
    source = str(data) if data is not None else recorded.get("data")
    if not source:
        raise ConfigError(f"{run_dir}: the run does not record its evaluation data; pass --data FILE")
    if data is None:
        source = _gold_source(source, run_dir, training)
    try:
        return load_examples(
            source,
            columns=columns if columns is not None else (recorded.get("columns") or None),
            on_mismatch=on_mismatch or recorded.get("on_mismatch") or "repair",  # type: ignore[arg-type]
            split=split if split is not None else recorded.get("split"),
        )
    except (DataError, FileNotFoundError) as err:
        if data is not None:
            raise
        raise DataError(f"the run's evaluation data cannot be read ({first_line(err)}); pass --data FILE") from None


def _model_folder(run_dir: Path, evaluation: Mapping[str, Any], model: str | Path | None) -> str:
    if model is not None:
        return str(model)
    if (run_dir / "config.json").is_file():
        return str(run_dir)
    recorded = evaluation.get("model")
    if isinstance(recorded, str) and recorded:
        return recorded
    raise ConfigError(f"{run_dir}: the run does not record its model; pass --model (the model folder, for its tokenizer and windows)")


def _history(model: str) -> list[dict[str, Any]]:
    """The Trainer's log history of a model folder (``trainer_state.json``, else its newest checkpoint's)."""
    folder = Path(model)
    if not folder.is_dir():
        return []
    checkpoints = [p for p in folder.glob("checkpoint-*/trainer_state.json") if re.fullmatch(r"checkpoint-\d+", p.parent.name)]
    states = [folder / "trainer_state.json", *sorted(checkpoints, key=lambda p: int(p.parent.name[len("checkpoint-"):]), reverse=True)]
    for state in states:
        if state.is_file():
            history = _read_object(state).get("log_history")
            return [dict(entry) for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []
    return []


def _span_of(prediction: ExamplePrediction, context: str) -> tuple[int, int] | None:
    if not prediction.text:
        return None
    for candidate in prediction.candidates:
        if candidate.text == prediction.text and candidate.document is None:
            return candidate.start, candidate.end
    at = context.find(prediction.text)
    return (at, at + len(prediction.text)) if at >= 0 else None


def _score_of(prediction: ExamplePrediction) -> float | None:
    for candidate in prediction.candidates:
        if candidate.text == prediction.text:
            return candidate.score
    return None


def _worst_errors(examples: Sequence[QAExample], predictions: Mapping[str, ExamplePrediction], questions: Sequence[QuestionScore],
                  limit: int) -> list[ErrorCase]:
    """Wrong answers (EM 0), lowest F1 first and, among equals, the most confident first."""
    cases = []
    for ex, q in zip(examples, questions):
        if q.exact:
            continue
        p = predictions[ex.id]
        gold = ex.answers[0].trimmed_span if ex.answers else None
        cases.append(ErrorCase(ex.id, ex.question, ex.context, p.text, _span_of(p, ex.context), tuple(a.text for a in ex.answers), gold,
                               q.exact, q.f1, _score_of(p)))
    cases.sort(key=lambda c: (c.f1, -(c.score or 0.0)))
    return cases[:limit]


def collect_report(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    model: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    on_mismatch: str | None = None,
    split: str | None = None,
    lang: str | None = None,
    worst: int = 25,
) -> RunReport:
    """Read a run and compute what its report shows.

    Args:
        run_dir: A ``spanqa train`` output folder (its evaluation is in ``eval/``) or a
            ``spanqa evaluate`` output folder.
        data: Gold data; default: the data the run was evaluated on (``evaluation.json``,
            else ``train_config.json``).
        model: The model (for its tokenizer and windows); default: ``run_dir`` when it is a
            model folder, else the model ``evaluation.json`` names.
        columns: Column mapping of ``data``; default: the recorded one.
        on_mismatch: Answer mismatch policy for ``data``; default: the recorded one.
        split: Split of a hub dataset; default: the recorded one.
        lang: Answer normalisation; default: the run's.
        worst: How many of the worst errors to list.

    Raises:
        DataError: no run folder, no ``predictions.json``, unreadable files, or gold data
            sharing no question with the predictions.
        ConfigError: the run records no gold data or model and none is given.
    """
    from spanqa.stages.data import MISMATCH_POLICIES

    if on_mismatch is not None and on_mismatch not in MISMATCH_POLICIES:
        raise ConfigError(f"unknown mismatch policy {on_mismatch!r}; choose one of {', '.join(MISMATCH_POLICIES)}")
    files = _read_run(Path(run_dir))
    dataset = _load_gold(files.run, files.evaluation, files.training, data, columns, on_mismatch, split)
    examples, notes = _matched_examples(dataset, files)
    lang = lang or files.evaluation.get("lang") or (files.training.get("training") or {}).get("eval_lang") or "squad"
    version_2 = (files.eval_dir / "null_odds.json").is_file()
    predictions = [files.predicted[ex.id] for ex in examples]
    scored = score_decoded(examples, predictions, version_2=version_2, lang=lang)
    model_name = _model_folder(files.run, files.evaluation, model)
    config = _model_config(model_name)
    threshold = _threshold_report(examples, predictions, files, config.null_threshold, lang) if version_2 else None
    history = _history(model_name)
    if not history:
        notes.append("No training history: the model folder has no trainer_state.json (runs of spanqa train save it).")
    return RunReport(
        name=files.run.resolve().name,
        run_dir=files.run,
        eval_dir=files.eval_dir,
        model=model_name,
        data=dataset.source,
        version_2=version_2,
        questions=len(examples),
        metrics=dict(scored.metrics),
        history=history,
        breakdowns=_breakdowns(examples, scored.questions, model_name, _window(files.evaluation, config)),
        errors=_worst_errors(examples, files.predicted, scored.questions, worst),
        threshold=threshold,
        notes=notes,
    )


@dataclass
class _RunFiles:
    """What a run folder holds: where its evaluation is, and what it recorded."""

    run: Path
    eval_dir: Path
    evaluation: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]
    predicted: dict[str, ExamplePrediction]


def _read_run(run_dir: Path) -> _RunFiles:
    eval_dir = _find_eval_dir(run_dir)
    run = run_dir
    if eval_dir == run and run.name == "eval" and (run.parent / "train_config.json").is_file():
        run = run.parent  # the eval/ folder of a training run: the run is its parent
    return _RunFiles(
        run=run,
        eval_dir=eval_dir,
        evaluation=_read_object(eval_dir / "evaluation.json"),
        training=_read_object(run / "train_config.json"),
        metrics=_read_object(eval_dir / "metrics.json"),
        predicted={p.id: p for p in read_prediction_files(eval_dir)},
    )


def _matched_examples(dataset: QADataset, files: _RunFiles) -> tuple[list[QAExample], list[str]]:
    """The gold questions that have a prediction, and a note when some have none."""
    examples = [ex for ex in dataset.examples if ex.id in files.predicted]
    if not examples:
        raise DataError(f"{dataset.source}: none of its {len(dataset)} questions has a prediction in {files.eval_dir / 'predictions.json'}; "
                        "is it the data the run was evaluated on?")
    notes = []
    if len(examples) < len(dataset.examples):
        notes.append(f"{len(dataset.examples) - len(examples)} of the {len(dataset.examples)} gold questions have no prediction and are left out.")
    return examples, notes


def _model_config(model_name: str) -> SpanQAConfig:
    return SpanQAConfig.load(model_name) if Path(model_name).is_dir() else SpanQAConfig()


def _window(evaluation: Mapping[str, Any], config: SpanQAConfig) -> WindowConfig:
    """The windows the run was evaluated with: as ``evaluation.json`` recorded, else the model's."""
    return WindowConfig(*(int(evaluation.get(key) or getattr(config, key)) for key in ("max_length", "stride", "max_question_tokens")))


def _breakdowns(examples: Sequence[QAExample], questions: Sequence[QuestionScore], model_name: str, window: WindowConfig) -> list[Breakdown]:
    from spanqa.runtime.models import load_tokenizer

    tokenizer = load_tokenizer(model_name)
    return [
        breakdown("question_word", "By question word", "question word", [question_word(ex.question) for ex in examples], questions,
                  (*QUESTION_WORDS, "other")),
        breakdown("answer_length", "By gold answer length in words", "answer length (words)", [_answer_length(ex) for ex in examples], questions,
                  _LENGTH_ORDER),
        *_context_breakdowns(examples, questions, tokenizer, window),
    ]


def _threshold_report(
    examples: Sequence[QAExample], predictions: Sequence[ExamplePrediction], files: _RunFiles, model_threshold: float, lang: str
) -> ThresholdReport:
    # The threshold the predictions were first decided at: recorded by evaluate, else beside tuned metrics, else the model's.
    default = files.evaluation.get("null_threshold")
    if not isinstance(default, (int, float)):
        default = (files.metrics.get("default_threshold") or {}).get("null_threshold", model_threshold)
    curve = null_threshold_curve(examples, predictions, lang=lang)
    tuning = tune_null_threshold(examples, predictions, default_threshold=float(default), lang=lang)
    return ThresholdReport(curve, tuning)


# --------------------------------------------------------------------------- figures


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def _new_figure(width: float, height: float) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _series(history: Sequence[Mapping[str, Any]], *keys: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the first of ``keys`` each log entry has."""
    steps, values = [], []
    for entry in history:
        key = next((k for k in keys if isinstance(entry.get(k), (int, float))), None)
        if key is not None and isinstance(entry.get("step"), (int, float)) and math.isfinite(entry[key]):
            steps.append(float(entry["step"]))
            values.append(float(entry[key]))
    return steps, values


def _training_figure(history: Sequence[Mapping[str, Any]]) -> Any | None:
    loss = _series(history, "loss")
    eval_loss = _series(history, "eval_loss")
    exact = _series(history, "eval_exact", "eval_exact_match")
    f1 = _series(history, "eval_f1")
    if not (loss[0] or eval_loss[0] or f1[0]):
        return None
    figure = _new_figure(10, 3.6)
    left, right = figure.subplots(1, 2)
    for (steps, values), label, style in ((loss, "training loss", "-"), (eval_loss, "dev loss", "o-")):
        if steps:
            left.plot(steps, values, style, label=label)
    left.set(title="Loss", xlabel="step", ylabel="loss")
    left.legend()
    for (steps, values), label in ((exact, "dev EM"), (f1, "dev F1")):
        if steps:
            right.plot(steps, values, "o-", label=label)
    right.set(title="Dev EM / F1 per evaluation", xlabel="step", ylabel="score (%)")
    if exact[0] or f1[0]:
        right.legend()
    else:
        right.text(0.5, 0.5, "no evaluation during training", ha="center", va="center", transform=right.transAxes)
    return figure


def _breakdown_figure(breakdowns: Sequence[Breakdown]) -> Any | None:
    shown = [b for b in breakdowns if b.rows]
    if not shown:
        return None
    columns = 2
    rows = (len(shown) + columns - 1) // columns
    figure = _new_figure(11, 3.2 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for ax, table in zip(axes, shown):
        labels = [f"{row.label} ({row.count})" for row in table.rows]
        y = np.arange(len(labels))
        ax.barh(y - 0.2, [row.f1 for row in table.rows], height=0.4, label="F1")
        ax.barh(y + 0.2, [row.exact for row in table.rows], height=0.4, label="EM")
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set(xlim=(0, 100), xlabel="score (%)", title=f"By {table.column}")
        ax.legend(loc="best", fontsize="small")
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    return figure


def _threshold_figure(threshold: ThresholdReport) -> Any:
    curve, tuning = threshold.curve, threshold.tuning
    finite = np.abs(curve.thresholds) < 1e300  # questions without any candidate sit at the largest float
    x = curve.thresholds[finite]
    figure = _new_figure(9, 3.8)
    ax = figure.subplots()
    ax.plot(x, curve.f1[finite], drawstyle="steps-post", label="F1")
    ax.plot(x, curve.exact[finite], drawstyle="steps-post", label="EM")
    ax.axvline(tuning.default_threshold, color="grey", linestyle="--", label=f"default {tuning.default_threshold:g}")
    ax.axvline(tuning.threshold, color="crimson", linestyle=":", label=f"tuned {tuning.threshold:.4g}")
    best = int(np.argmax(curve.f1))
    if finite[best]:
        ax.plot([curve.thresholds[best]], [curve.f1[best]], "o", color="crimson")
    ax.set(title=f"Scores against the no-answer threshold (best F1 {threshold.best_f1:.2f})",
           xlabel="no-answer threshold (null score - best span score)", ylabel="score (%)")
    ax.legend(fontsize="small")
    return figure


def draw_figures(report: RunReport) -> dict[str, bytes]:
    """The report's figures as PNG bytes, by name (``training``, ``breakdown``, ``threshold``); a figure
    with nothing to show is left out.

    Args:
        report: What :func:`collect_report` found.
    """
    figures = {
        "training": _training_figure(report.history),
        "breakdown": _breakdown_figure(report.breakdowns),
        "threshold": _threshold_figure(report.threshold) if report.threshold is not None else None,
    }
    return {name: _png(figure) for name, figure in figures.items() if figure is not None}


# --------------------------------------------------------------------------- HTML

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #1d1d1f; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta, .note { color: #555; } img { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 0.6rem 1.5rem 1rem 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.2rem 0.7rem; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
.tables { display: flex; flex-wrap: wrap; align-items: flex-start; }
ol.errors > li { margin-bottom: 1.2rem; }
.question { font-weight: 600; } .scores { color: #555; font-size: 0.9em; }
.excerpt { background: #fafafa; border-left: 3px solid #ccc; padding: 0.4rem 0.7rem; margin: 0.3rem 0; white-space: pre-wrap; }
mark { padding: 0 1px; border-radius: 2px; }
mark.pred { background: #ffc9c9; } mark.gold { background: #c3f0c8; } mark.pred.gold { background: #ffe58f; }
.legend mark { display: inline-block; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _image(figures: Mapping[str, bytes], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode("ascii")
    return f'<img id="figure-{name}" src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _number(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _breakdown_table(table: Breakdown) -> str:
    rows = "".join(
        f'<tr data-label="{_e(row.label)}"><td>{_e(row.label)}</td><td class="num count">{row.count}</td>'
        f'<td class="num em" data-value="{row.exact!r}">{_number(row.exact)}</td>'
        f'<td class="num f1" data-value="{row.f1!r}">{_number(row.f1)}</td></tr>'
        for row in table.rows
    )
    return (
        f'<table class="breakdown" id="breakdown-{_e(table.key)}"><caption>{_e(table.title)}</caption>'
        f'<thead><tr><th>{_e(table.column)}</th><th class="num">questions</th><th class="num">EM</th><th class="num">F1</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><td>{_e(key)}</td><td class="num" data-value="{float(value)!r}">{_number(float(value)) if "total" not in key else int(value)}</td></tr>'
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "thresh" not in key
    )
    return f'<table id="metrics"><thead><tr><th>metric</th><th class="num">value</th></tr></thead><tbody>{rows}</tbody></table>'


def _threshold_section(threshold: ThresholdReport, figures: Mapping[str, bytes]) -> str:
    tuning = threshold.tuning
    keys = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")
    present = [key for key in keys if key in tuning.default_metrics]
    header = "".join(f'<th class="num">{_e(key)}</th>' for key in present)

    def row(label: str, value: float, scores: Mapping[str, float], css: str) -> str:
        cells = "".join(f'<td class="num" data-value="{float(scores[key])!r}">{_number(float(scores[key]))}</td>' for key in present)
        return f'<tr class="{css}"><td>{_e(label)}</td><td class="num">{value:.4g}</td>{cells}</tr>'

    table = (
        f'<table id="threshold-scores"><thead><tr><th>threshold</th><th class="num">value</th>{header}</tr></thead><tbody>'
        + row("default", tuning.default_threshold, tuning.default_metrics, "default")
        + row("tuned", tuning.threshold, tuning.tuned_metrics, "tuned")
        + "</tbody></table>"
    )
    return (
        '<section id="threshold"><h2>No-answer threshold</h2>'
        '<p>A question is answered "no answer" when the null score minus its best span\'s score exceeds the threshold. '
        f'Best F1 over all thresholds: <strong id="threshold-best" data-value="{threshold.best_f1!r}">{_number(threshold.best_f1)}</strong> '
        f"(tuned threshold {tuning.threshold:.4g}; the default is {tuning.default_threshold:g}).</p>"
        + _image(figures, "threshold", "F1 and EM against the no-answer threshold")
        + table
        + "</section>"
    )


def _excerpt(case: ErrorCase) -> str:
    """The context around the predicted and gold spans, each marked (both where they overlap), escaped."""
    spans = [s for s in (case.prediction_span, case.gold_span) if s is not None]
    if spans:
        lo = max(0, min(s for s, _ in spans) - EXCERPT_CHARS)
        hi = min(len(case.context), max(e for _, e in spans) + EXCERPT_CHARS)
    else:
        lo, hi = 0, min(len(case.context), 2 * EXCERPT_CHARS)
    cuts = sorted({lo, hi, *(min(max(x, lo), hi) for span in spans for x in span)})
    parts = ["..." if lo > 0 else ""]
    for a, b in zip(cuts, cuts[1:]):
        classes = [name for name, span in (("pred", case.prediction_span), ("gold", case.gold_span)) if span and span[0] <= a < span[1]]
        text = _e(case.context[a:b])
        parts.append(f'<mark class="{" ".join(classes)}">{text}</mark>' if classes else text)
    parts.append("..." if hi < len(case.context) else "")
    return "".join(parts)


def _errors_section(errors: Sequence[ErrorCase]) -> str:
    if not errors:
        return '<section id="errors"><h2>Worst errors</h2><p>No wrong answers.</p></section>'
    items = []
    for case in errors:
        predicted = _e(case.prediction) if case.prediction else "<em>(no answer)</em>"
        gold = " | ".join(_e(text) for text in case.gold) if case.gold else "<em>(no answer)</em>"
        score = f" &middot; model score {case.score:.3f}" if case.score is not None else ""
        items.append(
            f'<li data-id="{_e(case.id)}"><div class="question">{_e(case.question)}</div>'
            f'<div class="scores">F1 <span class="f1" data-value="{case.f1!r}">{100 * case.f1:.1f}</span> &middot; EM {int(case.exact)}{score}</div>'
            f'<div>predicted: <mark class="pred">{predicted}</mark> &middot; gold: <mark class="gold">{gold}</mark></div>'
            f'<div class="excerpt">{_excerpt(case)}</div></li>'
        )
    return (
        f'<section id="errors"><h2>The {len(errors)} worst errors</h2>'
        '<p class="legend">Lowest F1 first, the most confident first among equals. '
        '<mark class="pred">predicted</mark> <mark class="gold">gold</mark> <mark class="pred gold">both</mark></p>'
        f'<ol class="errors">{"".join(items)}</ol></section>'
    )


def render_html(report: RunReport, figures: Mapping[str, bytes]) -> str:
    """The report as one HTML page: figures embedded as data URIs, every user text escaped, no scripts
    and no outside resources.

    Args:
        report: What :func:`collect_report` found.
        figures: PNG bytes by name (:func:`draw_figures`).
    """
    notes = "".join(f'<p class="note">{_e(note)}</p>' for note in report.notes)
    training = _image(figures, "training", "Training loss and dev EM/F1 per evaluation step") or '<p class="note">No training history to draw.</p>'
    tables = "".join(_breakdown_table(table) for table in report.breakdowns)
    style = "SQuAD v2.0 (no-answer allowed)" if report.version_2 else "SQuAD v1.1"
    body = (
        f"<header><h1>{_e(report.name)}</h1>"
        f'<p class="meta">model <code>{_e(report.model)}</code> &middot; data <code>{_e(report.data)}</code> &middot; '
        f"{report.questions} questions &middot; {style} &middot; spanqa {_e(__version__)}</p>{notes}</header>"
        f'<section id="summary"><h2>Scores</h2>{_metrics_table(report.metrics)}</section>'
        f'<section id="training"><h2>Training</h2>{training}</section>'
        f'<section id="breakdown"><h2>Where the model fails</h2>{_image(figures, "breakdown", "F1 and EM by group of questions")}'
        f'<div class="tables">{tables}</div></section>'
        + (_threshold_section(report.threshold, figures) if report.threshold is not None else "")
        + _errors_section(report.errors)
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="generator" content="{_GENERATOR} {_e(__version__)}">'
        f'<meta name="{_FIGURES_META}" content="{" ".join(name for name in FIGURES if name in figures)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>spanqa report: {_e(report.name)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def breakdown_markdown(breakdowns: Sequence[Breakdown]) -> str:
    """The breakdown tables in Markdown (for the model card).

    Args:
        breakdowns: The report's breakdowns.
    """

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    blocks = []
    for table in breakdowns:
        if not table.rows:
            continue
        lines = [f"**{cell(table.title)}**", "", f"| {cell(table.column)} | questions | EM | F1 |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {cell(row.label)} | {row.count} | {row.exact:.2f} | {row.f1:.2f} |" for row in table.rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- writing


def _is_spanqa_report(path: Path) -> bool:
    return f'<meta name="generator" content="{_GENERATOR}' in _head(path)


def _head(path: Path) -> str:
    """The start of a file (a report's ``<head>``), or "" when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(2048)
    except OSError:
        return ""


def _figures_written(path: Path) -> set[str]:
    """The figures the spanqa report at ``path`` wrote beside it, as it recorded them; none for another
    file, or for a report of a spanqa that did not record them (its files are then left alone)."""
    if not _is_spanqa_report(path):
        return set()
    found = re.search(rf'<meta name="{_FIGURES_META}" content="([a-z ]*)">', _head(path))
    return set(found.group(1).split()) & set(FIGURES) if found else set()


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    **options: Any,
) -> ReportFiles:
    """Write a run's report: ``out`` (HTML, figures embedded) and its figures as PNGs beside it.

    The PNGs are named after the HTML file (``report.html``: ``report-training.png``, ...).
    Every file is written atomically. An earlier spanqa report at ``out`` is replaced; of the PNGs
    beside it, only those it recorded as its own (and this report no longer draws) are deleted.

    Args:
        run_dir: A ``spanqa train`` or ``spanqa evaluate`` output folder.
        out: The HTML file; default: ``RUN_DIR/report.html``.
        overwrite: Replace ``out`` even when it is not a spanqa report.
        **options: What :func:`collect_report` takes (``data``, ``model``, ``columns``, ...).

    Raises:
        OutputError: ``out`` is a folder, or a file other than a spanqa report (without ``overwrite``).
        DataError, ConfigError: see :func:`collect_report`.
    """
    target = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    check_new_file(target, overwrite, expected="an .html file name", owned=_is_spanqa_report, owned_name="a spanqa report")
    report = collect_report(run_dir, **options)
    figures = draw_figures(report)
    earlier = _figures_written(target)
    paths: dict[str, Path] = {}
    for name in FIGURES:
        path = target.with_name(f"{target.stem}-{name}.png")
        if name in figures:
            with atomic_open(path, "wb", encoding=None) as handle:
                handle.write(figures[name])
            paths[name] = path
        elif name in earlier and path.is_file():
            path.unlink()  # the earlier report's own figure, which this one no longer has (never a file it did not write)
    with atomic_open(target) as handle:
        handle.write(render_html(report, figures))
    return ReportFiles(target, paths, report)


def write_report_or_warn(run_dir: str | Path, **options: Any) -> ReportFiles | None:
    """:func:`write_report`, logging a warning instead of raising: a report that cannot be drawn
    must never cost the model or the evaluation that came before it.

    Args:
        run_dir: The run folder.
        **options: What :func:`write_report` takes.
    """
    try:
        files = write_report(run_dir, **options)
    except Exception as err:  # noqa: BLE001 - matplotlib, a tokenizer, the disk: any failure only costs the report
        logger.warning("could not write the report of %s: %s", run_dir, first_line(err))
        return None
    logger.info("wrote the report %s (open it in a browser)", files.html)  # the one announcement, for train and evaluate alike
    return files
