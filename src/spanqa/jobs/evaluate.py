"""Run a model over a gold dataset and score it with the official SQuAD metrics.

An evaluation is a chain of steps, each a function taking and returning an :class:`Evaluation`:

    predict_dataset -> score_evaluation -> tune_threshold -> calibrate_scores -> add_open_domain
    -> save_tuned_settings / write_evaluation

:func:`evaluate` runs the chain that :class:`EvaluationSteps` asks for; training's final
evaluation (:mod:`spanqa.jobs.training`) composes the same steps itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from spanqa.core.config import SpanQAConfig
from spanqa.core.errors import ConfigError, did_you_mean
from spanqa.jobs.calibration import Calibration
from spanqa.jobs.calibration import calibrate as fit_calibration
from spanqa.jobs.evaluation_files import (
    EVALUATION_FILES,
    MODEL_FILES,
    check_evaluation_folder,
    read_prediction_files,
    write_prediction_files,
)
from spanqa.jobs.opendomain import OpenDomainResult, evaluate_open_domain
from spanqa.jobs.scoring import (
    ThresholdCurve,
    ThresholdTuning,
    null_threshold_curve,
    score_decoded,
    threshold_metrics,
    tune_null_threshold,
    with_null_threshold,
)
from spanqa.reading.index import Index
from spanqa.reading.reader import Reader
from spanqa.runtime.backends import evaluation_precision
from spanqa.runtime.options import LOAD_OPTION_NAMES, LoadOptions
from spanqa.stages.data import DataSource, QADataset, read_dataset
from spanqa.stages.decode import ExamplePrediction
from spanqa.stages.metrics import ScoreReport

__all__ = [
    "EvaluationSteps",
    "Evaluation",
    "EvaluationResult",
    "evaluate",
    "predict_dataset",
    "score_evaluation",
    "tune_threshold",
    "calibrate_scores",
    "add_open_domain",
    "fit_passage_ranking",
    "save_tuned_settings",
    "write_evaluation",
    "evaluation_settings",
    "check_steps",
    # the scoring and file helpers evaluation is built on, importable from here as before
    "ThresholdTuning",
    "ThresholdCurve",
    "null_threshold_curve",
    "score_decoded",
    "threshold_metrics",
    "tune_null_threshold",
    "with_null_threshold",
    "read_prediction_files",
    "write_prediction_files",
    "check_evaluation_folder",
    "EVALUATION_FILES",
    "MODEL_FILES",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSteps:
    """What an evaluation does after predicting and scoring.

    Attributes:
        tune_threshold: Also find the F1-maximising null threshold (v2 data) and report both.
        calibrate: Fit the score temperature on this data (see :mod:`spanqa.jobs.calibration`); the
            expected calibration error before and after goes into the metrics.
        save: Store what was tuned or fitted (threshold, temperature) in the model folder's
            ``spanqa.json``, so Reader, predict and serve apply it.
        index: Also evaluate open-domain over this passage index (see :mod:`spanqa.jobs.opendomain`):
            retrieval recall@1/5/20 and end-to-end EM/F1 go into the metrics under ``open_domain``.
        passages: With ``index``: passages the reader reads per question.
        lang: Answer normalisation, ``"squad"`` or a language code.
    """

    tune_threshold: bool = False
    calibrate: bool = False
    save: bool = False
    index: str | Path | Index | None = None
    passages: int = 10
    lang: str = "squad"


STEP_NAMES = frozenset(f.name for f in fields(EvaluationSteps))
# The window and decoding settings an evaluation may override; whether "no answer" is allowed follows the data (version_2).
SETTING_NAMES = frozenset(f.name for f in fields(SpanQAConfig)) - {"handle_impossible", "spanqa_version", "data_fingerprint", "extra"}
DATA_OPTION_NAMES = frozenset({"columns", "no_answer_marker", "on_mismatch", "split", "version_2"})
_REPLACED = {
    "save_threshold": " (the command line's --save-threshold; here: tune_threshold=True, save=True)",
    "handle_impossible": " (an evaluation allows 'no answer' as its data is scored: version_2=True or False)",
}


@dataclass(frozen=True)
class Evaluation:
    """One evaluation as it goes through its steps: what is evaluated, and what each step found.

    Attributes:
        reader: The model, with the window and decoding settings evaluated.
        dataset: The gold data.
        version_2: Whether "no answer" is allowed and scored (SQuAD v2 rules).
        lang: Answer normalisation.
        null_threshold: The no-answer threshold the predictions were first decided at.
        predictions: The decided predictions (re-decided by :func:`tune_threshold`).
        report: The official scores of ``predictions`` (:func:`score_evaluation`).
        metrics: What ``metrics.json`` holds: the scores plus what later steps add.
        tuning: What :func:`tune_threshold` found.
        calibration: What :func:`calibrate_scores` found.
        open_domain: What :func:`add_open_domain` found.
    """

    reader: Reader
    dataset: QADataset
    version_2: bool
    lang: str = "squad"
    null_threshold: float = 0.0
    predictions: list[ExamplePrediction] = field(default_factory=list)
    report: ScoreReport | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    tuning: ThresholdTuning | None = None
    calibration: Calibration | None = None
    open_domain: OpenDomainResult | None = None

    def scored(self) -> ScoreReport:
        """The scores of the predictions; refused before :func:`score_evaluation` ran."""
        if self.report is None:
            raise ValueError("score the evaluation first (score_evaluation)")
        return self.report

    def result(self, output_dir: Path | None = None) -> EvaluationResult:
        """What :func:`evaluate` returns for this evaluation, written to ``output_dir``."""
        return EvaluationResult(self.metrics, self.predictions, self.scored(), output_dir, self.tuning, self.calibration, self.open_domain)


@dataclass
class EvaluationResult:
    """What :func:`evaluate` found: the metrics (as ``metrics.json`` holds them), the decided predictions,
    their official scores, where the files went, and what the steps found."""

    metrics: dict[str, Any]
    predictions: list[ExamplePrediction]
    report: ScoreReport
    output_dir: Path | None = None
    tuning: ThresholdTuning | None = None
    calibration: Calibration | None = None
    open_domain: OpenDomainResult | None = None


# --------------------------------------------------------------------------- the steps


def predict_dataset(
    reader: Reader, dataset: QADataset, *, version_2: bool | None = None, lang: str = "squad", progress: bool = False
) -> Evaluation:
    """Every question of ``dataset`` answered by ``reader``, decided at the model's null threshold.

    Args:
        reader: The model, with the window and decoding settings to evaluate.
        dataset: The gold data.
        version_2: Allow and score "no answer"; default: as the data says.
        lang: Answer normalisation (used by the later steps).
        progress: Show a progress bar.
    """
    v2 = dataset.version_2 if version_2 is None else version_2
    decode_config = reader.config.decode_config(handle_impossible=v2)
    predictions = reader.predict_examples(dataset.examples, decode_config, progress=progress)
    return Evaluation(reader, dataset, v2, lang, decode_config.null_threshold, predictions)


def score_evaluation(evaluation: Evaluation) -> Evaluation:
    """The official scores of the predictions (SQuAD v2 rules with ``version_2``), as the metrics."""
    report = score_decoded(evaluation.dataset.examples, evaluation.predictions, version_2=evaluation.version_2, lang=evaluation.lang)
    return replace(evaluation, report=report, metrics=dict(report.metrics))


def tune_threshold(evaluation: Evaluation) -> Evaluation:
    """The null threshold that maximises F1, the predictions re-decided at it and scored again; the
    metrics are those at the tuned threshold, with the default threshold's under ``default_threshold``.

    Raises:
        ConfigError: the evaluation does not allow "no answer" (v1 data).
    """
    check_steps(EvaluationSteps(tune_threshold=True), evaluation.version_2)
    examples = evaluation.dataset.examples
    tuning = tune_null_threshold(examples, evaluation.predictions, default_threshold=evaluation.null_threshold, lang=evaluation.lang)
    predictions = with_null_threshold(evaluation.predictions, tuning.threshold)
    report = score_decoded(examples, predictions, version_2=True, lang=evaluation.lang)
    return replace(evaluation, predictions=predictions, report=report, metrics=threshold_metrics(tuning), tuning=tuning)


def calibrate_scores(evaluation: Evaluation) -> Evaluation:
    """The score temperature fitted on the scored predictions; the calibration error before and
    after goes into the metrics under ``calibration``."""
    reader = evaluation.reader
    calibration = fit_calibration(evaluation.predictions, evaluation.scored().questions, evaluation.version_2, current_temperature=reader.config.temperature)
    return replace(evaluation, metrics={**evaluation.metrics, "calibration": calibration.to_dict()}, calibration=calibration)


def add_open_domain(evaluation: Evaluation, index: Index, passages: int = 10) -> Evaluation:
    """The same questions asked of a passage index: retrieval recall and end-to-end EM/F1 go into
    the metrics under ``open_domain`` (see :func:`spanqa.jobs.opendomain.evaluate_open_domain`)."""
    found = evaluate_open_domain(
        evaluation.reader, index, evaluation.dataset.examples, passages=passages, version_2=evaluation.version_2, lang=evaluation.lang
    )
    return replace(evaluation, metrics={**evaluation.metrics, "open_domain": found.to_dict()}, open_domain=found)


FIT_QUESTIONS = 500
"""Most questions :func:`fit_passage_ranking` asks (each reads 10 passages: ten times the evaluation's reading)."""


def fit_passage_ranking(evaluation: Evaluation, questions: int = FIT_QUESTIONS, seed: int = 0) -> Evaluation:
    """Ask (a sample of) the questions of a BM25 index of the data's own paragraphs, as
    ``evaluate --index`` does: EM/F1 with 1, 3 and 10 passages and the fitted retrieval weight go
    into the metrics under ``open_domain`` (:func:`save_tuned_settings` then saves the weight).
    Data with fewer than 3 paragraphs is left as it is (nothing to rank across).

    Args:
        evaluation: A scored evaluation.
        questions: Most questions asked (a seeded sample of them; all when there are fewer).
        seed: The sample's seed.
    """
    import json
    import random
    import tempfile

    from spanqa.reading.index import build_index

    examples = evaluation.dataset.examples
    contexts = list(dict.fromkeys(ex.context for ex in examples))
    if len(contexts) < 3:
        return evaluation
    asked = sorted(random.Random(seed).sample(range(len(examples)), min(questions, len(examples))))
    with tempfile.TemporaryDirectory(prefix="spanqa-paragraphs-") as folder:
        rows = "".join(json.dumps({"text": context}, ensure_ascii=False) + "\n" for context in contexts)
        (Path(folder) / "paragraphs.jsonl").write_text(rows, encoding="utf-8")
        index = build_index([Path(folder) / "paragraphs.jsonl"], Path(folder) / "index")
        found = evaluate_open_domain(
            evaluation.reader, index, [examples[i] for i in asked], passages=10, version_2=evaluation.version_2, lang=evaluation.lang
        )
    return replace(evaluation, metrics={**evaluation.metrics, "open_domain": found.to_dict()}, open_domain=found)


def save_tuned_settings(evaluation: Evaluation, model_folder: str | Path) -> Path:
    """Store what was tuned (null threshold) and fitted (temperature, retrieval weight) in ``model_folder``'s ``spanqa.json``.

    Args:
        evaluation: An evaluation after :func:`tune_threshold`, :func:`calibrate_scores` and/or :func:`add_open_domain`.
        model_folder: The local model folder.
    """
    folder = Path(model_folder)
    found: dict[str, float] = {}
    if evaluation.tuning is not None:
        found["null_threshold"] = evaluation.tuning.threshold
    if evaluation.calibration is not None:
        found["temperature"] = evaluation.calibration.temperature
    if evaluation.open_domain is not None and evaluation.open_domain.fitted is not None:
        found["retrieval_weight"] = evaluation.open_domain.fitted.weight
    if found:
        SpanQAConfig.load(folder).updated(**found).save(folder)
        for name, value in found.items():
            logger.info("saved %s %.4f to %s", name, value, folder / "spanqa.json")
    return folder


def write_evaluation(evaluation: Evaluation, output_dir: str | Path, *, overwrite: bool = False, settings: Mapping[str, Any] | None = None) -> Path:
    """The evaluation's files (see :func:`spanqa.jobs.evaluation_files.write_prediction_files`).

    Args:
        evaluation: A scored evaluation.
        output_dir: A new or empty folder, or an earlier evaluation's (with ``overwrite``).
        overwrite: Replace an earlier evaluation's files.
        settings: What ``evaluation.json`` records (:func:`evaluation_settings`); None writes none.
    """
    found = evaluation.open_domain
    return write_prediction_files(
        output_dir,
        evaluation.predictions,
        evaluation.metrics,
        version_2=evaluation.version_2,
        overwrite=overwrite,
        settings=settings,
        open_domain_predictions=found.predictions if found else None,
    )


def evaluation_settings(model: str | Path | Reader, evaluation: Evaluation, source: DataSource | None = None) -> dict[str, Any]:
    """What ``evaluation.json`` records: enough to load the same gold data and windows again.

    Args:
        model: The model as it was given (a name, or the reader).
        evaluation: The evaluation.
        source: How the gold data was read (columns, mismatch policy, split); default: the defaults.
    """
    if isinstance(model, Reader):
        config = getattr(getattr(model, "model", None), "config", None)
        name = getattr(config, "name_or_path", None) or None
    else:
        name = str(model)
    described = (source or DataSource(evaluation.dataset.source)).describe()
    config = evaluation.reader.config
    return {
        "model": _local_or_name(str(name)) if name else None,
        "data": _local_or_name(evaluation.dataset.source),
        **described,
        "version_2": evaluation.version_2,
        "lang": evaluation.lang,
        "null_threshold": evaluation.null_threshold,
        "max_length": config.max_length,
        "stride": config.stride,
        "max_question_tokens": config.max_question_tokens,
    }


def check_steps(steps: EvaluationSteps, version_2: bool) -> None:
    """Refuse, before predicting, steps that cannot run on this data.

    Raises:
        ConfigError: threshold tuning on data without unanswerable questions.
    """
    if steps.tune_threshold and not version_2:
        raise ConfigError("--tune-threshold needs SQuAD v2 style data (with unanswerable questions) or --version-2")


# --------------------------------------------------------------------------- the whole chain


def evaluate(
    model: str | Path | Reader,
    data: str | Path | DataSource | QADataset,
    *,
    load: LoadOptions | None = None,
    settings: Mapping[str, Any] | None = None,
    steps: EvaluationSteps | None = None,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **overrides: Any,
) -> EvaluationResult:
    """Predict every question of ``data`` with ``model`` and score the answers; then the ``steps``.

    Args:
        model: A model folder, alias or hub id, or a loaded :class:`Reader`.
        data: A data file or hub dataset name, a :class:`DataSource`, or a loaded dataset.
        load: Device, backend, precision and batch size when ``model`` is loaded here
            (:class:`LoadOptions`; batch size 32 by default, a given reader's own otherwise).
        settings: Window and decoding overrides (:class:`SpanQAConfig` fields: ``max_length``,
            ``stride``, ``n_best``, ``max_answer_length``, ``null_threshold``...); else the model's ``spanqa.json``.
        steps: What to do after scoring (tune the threshold, calibrate, save, open-domain); default: nothing.
        output_dir: Where ``predictions.json``, ``nbest_predictions.json``, ``null_odds.json`` (v2),
            ``metrics.json`` and ``evaluation.json`` go; nothing is written when None.
        overwrite: Replace an earlier evaluation's files in ``output_dir``.
        progress: Show a progress bar.
        **overrides: Any field of the four by name: :class:`LoadOptions` (``device="cpu"``),
            :class:`SpanQAConfig` (``max_length=256``), :class:`EvaluationSteps` (``tune_threshold=True``,
            ``lang="de"``) and the data options (``columns``, ``no_answer_marker``, ``on_mismatch``,
            ``split``, ``version_2``: allow "no answer", default detected from the data).

    Raises:
        TypeError: an override that names nothing above.
        ConfigError: threshold tuning on data without unanswerable questions, or saving
            without a local model folder; both checked before predicting.
        OutputError: ``output_dir`` may not be written (see :func:`check_evaluation_folder`); checked first.
    """
    given = _split_overrides(overrides)
    steps = replace(steps or EvaluationSteps(), **given["steps"])
    if output_dir is not None:
        check_evaluation_folder(output_dir, overwrite)
    save_to = _model_folder(model) if steps.save else None
    index = Index.open(steps.index) if steps.index is not None else None  # before the model loads: a wrong folder fails fast
    source, dataset = read_dataset(data, **given["data"])
    check_steps(steps, dataset.version_2)
    reader = _reader(model, load, given["load"], {**(settings or {}), **given["settings"]})
    evaluation = score_evaluation(predict_dataset(reader, dataset, lang=steps.lang, progress=progress))
    if steps.tune_threshold:
        evaluation = tune_threshold(evaluation)
    if steps.calibrate:
        evaluation = calibrate_scores(evaluation)
    if index is not None:
        evaluation = add_open_domain(evaluation, index, steps.passages)
    if save_to is not None:
        save_tuned_settings(evaluation, save_to)
    out = None
    if output_dir is not None:
        out = write_evaluation(evaluation, output_dir, overwrite=overwrite, settings=evaluation_settings(model, evaluation, source))
    return evaluation.result(out)


def _split_overrides(overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Keyword overrides sorted into load options, model settings, steps and data options (None keeps the default)."""
    known = {"load": LOAD_OPTION_NAMES, "settings": SETTING_NAMES, "steps": STEP_NAMES, "data": DATA_OPTION_NAMES}
    groups: dict[str, dict[str, Any]] = {group: {} for group in known}
    for name, value in overrides.items():
        group = next((group for group, names in known.items() if name in names), None)
        if group is None:
            hint = _REPLACED.get(name) or did_you_mean(name, set().union(*known.values()))
            raise TypeError(
                f"evaluate() got an unexpected keyword argument {name!r}{hint}; it takes the fields of LoadOptions, SpanQAConfig "
                f"and EvaluationSteps, and the data options {', '.join(sorted(DATA_OPTION_NAMES))}"
            )
        if value is not None:
            groups[group][name] = value
    return groups


def _reader(model: str | Path | Reader, load: LoadOptions | None, load_overrides: Mapping[str, Any], settings: Mapping[str, Any]) -> Reader:
    """The reader evaluated: ``model`` loaded with ``load`` (fp32 on the CPU unless a dtype is asked for:
    :func:`~spanqa.runtime.backends.evaluation_precision`), or the given reader with these settings."""
    options = (load or LoadOptions()).updated(**load_overrides)
    if isinstance(model, Reader):
        chosen = load is not None or load_overrides.get("batch_size") is not None
        return model.with_settings(batch_size=options.batch_size if chosen else None, **settings)
    if options.dtype is None:
        options = options.updated(dtype=evaluation_precision(options.device))
    return Reader.from_pretrained(model, options, **settings)


def _local_or_name(name: str) -> str:
    """An existing local path made absolute (a report may run from another folder), else the name as given."""
    path = Path(name)
    try:
        return str(path.resolve()) if name and path.exists() else name
    except OSError:
        return name


def _model_folder(model: str | Path | Reader) -> Path:
    """The local model folder tuned settings are saved into; refused before any work when there is none."""
    from spanqa.runtime.models import resolve_model

    folder = None if isinstance(model, Reader) else Path(resolve_model(str(model)))
    if folder is None or not folder.is_dir():
        raise ConfigError("--save needs a local model folder to write spanqa.json into")
    return folder
