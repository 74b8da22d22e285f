"""Any tokenizer, any script: the same commands for every model family; answers cut from the original text."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from conftest import build_wordpiece
from typer.testing import CliRunner

from spanqa import QAExample, Reader, WindowConfig, build_features
from spanqa.interfaces.cli import app

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src" / "spanqa"


@pytest.mark.parametrize("family", ["tiny_bert_dir", "tiny_roberta_dir", "tiny_xlmr_dir"])
def test_every_family_trains_and_evaluates_through_the_same_commands(family, request, sample_train, sample_dev, tmp_path):
    model_dir = request.getfixturevalue(family)
    out = tmp_path / "model"
    res = runner.invoke(app, [
        "train", "--model", str(model_dir), "--train", str(sample_train), "--eval", str(sample_dev), "--output-dir", str(out),
        "--max-steps", "4", "--max-length", "128", "--stride", "32", "--batch-size", "8", "--learning-rate", "1e-3",
    ])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(sample_dev), "--output-dir", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    trained = json.loads((out / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["f1"] == pytest.approx(trained["f1"], abs=1e-9)
    predictions = json.loads((tmp_path / "eval" / "nbest_predictions.json").read_text())
    contexts = {q["id"]: p["context"] for a in json.loads(sample_dev.read_text())["data"] for p in a["paragraphs"] for q in p["qas"]}
    for qid, spans in predictions.items():
        for span in spans:
            assert contexts[qid][span["start"] : span["end"]] == span["text"]


def test_left_padding_context_first_model_trains_and_evaluates(tiny_bert_dir, sample_train, sample_dev, tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "left"
    folder.mkdir()
    for item in tiny_bert_dir.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["padding_side"] = "left"  # as XLNet-style checkpoints declare it
    config_path.write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(folder).padding_side == "left"

    out = tmp_path / "model"
    res = runner.invoke(app, [
        "train", "--model", str(folder), "--train", str(sample_train), "--eval", str(sample_dev), "--output-dir", str(out),
        "--max-steps", "3", "--max-length", "128", "--stride", "32", "--batch-size", "8",
    ])
    assert res.exit_code == 0, res.output
    result = Reader.from_pretrained(out)("Who keeps the light?", "The light at Gull Point is kept by Marta Ilves since 1998.", top_k=3)
    context = "The light at Gull Point is kept by Marta Ilves since 1998."
    assert all(context[a.start : a.end] == a.text for a in result.answers)


def test_left_padding_features_put_context_first(left_padding_tokenizer):
    context = "Marta Ilves has kept the Gull Point light since 1998 and writes weather notes every evening."
    example = QAExample("x", "Who keeps the light?", context, (__import__("spanqa").Answer("Marta Ilves", 0),))
    features = build_features([example], left_padding_tokenizer, WindowConfig(max_length=24, stride=4, max_question_tokens=8))
    for i in range(len(features)):
        context_positions = (features.offsets[i, :, 0] >= 0).nonzero()[0]
        question_start = features.input_ids[i].index(left_padding_tokenizer.sep_token_id)
        assert context_positions.max() < question_start, "context tokens come before the question"
    labelled = [i for i in range(len(features)) if features.start_positions[i] != features.cls_index[i]]
    assert labelled
    i = labelled[0]
    cut = context[features.offsets[i, features.start_positions[i], 0] : features.offsets[i, features.end_positions[i], 1]]
    assert cut == "Marta Ilves"


SCRIPTS = {
    "arabic": ("من يدير المنارة؟", "تدير مريم الحسن منارة الرأس الشمالي منذ عام ١٩٩٨، وتكتب ملاحظات الطقس كل مساء."),
    "hindi": ("पतंग उत्सव कहाँ होता है?", "पतंग उत्सव हर साल जयपुर के पुराने मैदान में होता है और बच्चे रंगीन पतंगें उड़ाते हैं।"),
    "chinese": ("石桥建于哪一年？", "这座石桥建于一七八二年，由村里的石匠共同修建，至今仍在使用。"),
    "greek": ("Πού βρίσκεται το ελαιοτριβείο;", "Το παλιό ελαιοτριβείο βρίσκεται στο χωριό Αμπελάκια και λειτουργεί από το 1912."),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_answers_are_cut_from_the_original_text_in_any_script(script, tiny_xlmr_dir):
    question, context = SCRIPTS[script]
    reader = Reader.from_pretrained(tiny_xlmr_dir)
    result = reader(question, context, top_k=10, handle_impossible=False)
    assert result.answers
    for answer in result.answers:
        assert context[answer.start : answer.end] == answer.text
        assert answer.text == answer.text.strip()
        # Never split a base character from its combining marks.
        assert not unicodedata.category(context[answer.start]).startswith("M")
        if answer.end < len(context):
            assert not unicodedata.category(context[answer.end]).startswith("M")


def test_wordpiece_offsets_recover_answers_with_combining_marks():
    tokenizer = build_wordpiece()  # lower-cases and strips accents in its normaliser
    context = "पतंग उत्सव हर साल जयपुर के पुराने मैदान में होता है। Café Zürich opened in 1912."
    for answer_text in ("जयपुर", "पुराने मैदान", "Café Zürich", "1912"):
        start = context.index(answer_text)
        example = QAExample("x", "Where?", context, (__import__("spanqa").Answer(answer_text, start),))
        features = build_features([example], tokenizer, WindowConfig(max_length=128, stride=32))
        s, e = features.start_positions[0], features.end_positions[0]
        assert s != features.cls_index[0]
        from spanqa.stages.decode import _tidy

        cut_start, cut_end = _tidy(context, int(features.offsets[0, s, 0]), int(features.offsets[0, e, 1]))
        assert context[cut_start:cut_end] == answer_text


def test_no_model_specific_branches_outside_the_features_stage():
    """Model families differ only in tokenization; nothing else may special-case them."""
    pattern = re.compile(r"(model_type\s*==|roberta|xlm|xlnet|distilbert|\bbert\b)", re.IGNORECASE)
    # arguments.py names families only in help text; export.py tells ONNX Runtime's optimizer the graph family.
    allowed = {"features.py", "models.py", "arguments.py", "export.py"}
    offenders = []
    for path in SRC.glob("*.py"):
        if path.name in allowed:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and not line.strip().startswith(("#", '"', "'")):
                offenders.append(f"{path.name}:{lineno}: {line.strip()}")
    assert not offenders, offenders
