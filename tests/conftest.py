"""Shared fixtures: tiny tokenizers of each family and tiny random QA models, built locally."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

# bench/ holds the notebook reference recipe (bench/reference_recipe.py) that tests compare against.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

os.environ.setdefault("SPANQA_CACHE", tempfile.mkdtemp(prefix="spanqa-test-cache-"))  # never the user's cache
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
XQUAD = SHARED / "xquad"
SUBJQA = SHARED / "subjqa"
SPECIALS_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIALS_ROBERTA = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def needs_shared(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"shared data not found at {path} (it sits beside the repository in CI)")


def sample_path(split: str) -> Path:
    return Path(str(resources.files("spanqa") / "sample_data" / f"{split}.json"))


def _corpus() -> list[str]:
    texts: list[str] = []
    for split in ("train", "dev"):
        data = json.loads(sample_path(split).read_text(encoding="utf-8"))
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                texts.append(paragraph["context"])
                texts.extend(q["question"] for q in paragraph["qas"])
    texts.append("0123456789 .,;:!?'\"()[]{}-_/\\ @#$%^&*+=<>|~` ÄÖÜäöüß éèêàçñ")
    return texts


def _bpe_pieces(normalizer, pre_tokenizer, vocab_size: int, continuation: str) -> tuple[list[str], Counter[str]]:
    """The corpus's characters, and the pieces a BPE trained on it splits its words into, with counts.

    The WordPiece and Unigram trainers of tokenizers are not reproducible (WordPiece breaks ties
    between merges in hash-map order, Unigram sums its scores in parallel), so each process got
    another vocabulary, another random model from the same seed, and tests on that model's
    near-tied scores passed or failed by chance. Plain BPE training is reproducible: its pieces,
    a word's first piece as is and later ones marked with ``continuation``, make both vocabularies.
    """
    from tokenizers import Tokenizer, models, trainers

    corpus = _corpus()
    bpe = Tokenizer(models.BPE())
    bpe.normalizer, bpe.pre_tokenizer = normalizer, pre_tokenizer
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False))
    words = Counter(word for text in corpus for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for i, piece in enumerate(bpe.model.tokenize(word)):
            pieces[piece.value if i == 0 else continuation + piece.value] += count
    return sorted({c for word in words for c in word}), pieces


def _most_frequent(pieces: Counter[str], taken: list[str], size: int) -> list[str]:
    """``taken``, then the most frequent other pieces (ties alphabetically) up to ``size`` in all."""
    seen = set(taken)
    ranked = sorted((piece for piece in pieces if piece not in seen), key=lambda piece: (-pieces[piece], piece))
    return taken + ranked[: max(0, size - len(taken))]


def build_wordpiece(vocab_size: int = 1000):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    chars, pieces = _bpe_pieces(normalizer, pre_tokenizer, vocab_size, continuation="##")
    vocab = _most_frequent(pieces, SPECIALS_BERT + chars + ["##" + c for c in chars], vocab_size)
    tok = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        model_max_length=512,
    )


def build_byte_bpe(vocab_size: int = 1000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS_ROBERTA, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), trim_offsets=True, add_prefix_space=False
    )
    return RobertaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", model_max_length=512,
    )


# Unicode blocks of the XQuAD languages' scripts: Latin, Greek, Cyrillic, Arabic, Devanagari,
# general and CJK punctuation, CJK ideographs, full-width forms.
SCRIPT_BLOCKS = [(0x20, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF), (0x900, 0x97F),
                 (0x2000, 0x206F), (0x3000, 0x303F), (0x4E00, 0x9FFF), (0xFF00, 0xFFEF)]


def build_sentencepiece(vocab_size: int = 1000, multilingual: bool = False):
    """A SentencePiece unigram built from the sample data.

    ``multilingual`` configures it as production multilingual SentencePiece
    models are (Llama/Gemma style): every character of the SCRIPT_BLOCKS is in
    the alphabet, anything else falls back to bytes (instead of one ``<unk>``
    fused over a run of unseen characters), pieces never cross a change of
    script, and digits are split one by one.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    normalizer = normalizers.NFKC()
    if multilingual:  # SentencePiece's split_by_unicode_script and split_digits
        pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.UnicodeScripts(),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Metaspace(prepend_scheme="first"),
        ])
    else:
        pre_tokenizer = pre_tokenizers.Metaspace()
    # Pieces, and their frequencies as unigram log-probabilities, from a BPE (see _bpe_pieces):
    # words arrive from the Metaspace pre-tokenizer already marked with "▁", so no continuation mark.
    chars, pieces = _bpe_pieces(normalizer, pre_tokenizer, vocab_size, continuation="")
    alphabet = sorted(set(chars) | {chr(c) for lo, hi in SCRIPT_BLOCKS for c in range(lo, hi + 1)}) if multilingual else chars
    vocab = _most_frequent(pieces, alphabet, vocab_size - len(SPECIALS_ROBERTA) + len(alphabet) - len(chars))
    total = sum(pieces.values())
    scored = [(piece, math.log(max(pieces[piece], 0.5) / total)) for piece in vocab]
    if multilingual:  # anything outside the alphabet falls back to bytes
        scored += [(f"<0x{b:02X}>", -100.0) for b in range(256)]
    model = models.Unigram([(piece, 0.0) for piece in SPECIALS_ROBERTA] + scored, unk_id=SPECIALS_ROBERTA.index("<unk>"), byte_fallback=multilingual)
    tok = Tokenizer(model)
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(SPECIALS_ROBERTA)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", model_max_length=512,
    )


TOKENIZER_BUILDERS = {"wordpiece": build_wordpiece, "byte_bpe": build_byte_bpe, "sentencepiece": build_sentencepiece}


@pytest.fixture(scope="session", params=sorted(TOKENIZER_BUILDERS))
def any_tokenizer(request):
    """Each tokenizer family in turn (WordPiece, byte-level BPE, SentencePiece)."""
    return TOKENIZER_BUILDERS[request.param]()


@pytest.fixture(scope="session")
def wordpiece_tokenizer():
    return build_wordpiece()


@pytest.fixture(scope="session")
def left_padding_tokenizer():
    """A context-first tokenizer (XLNet-style left padding)."""
    tok = build_wordpiece()
    tok.padding_side = "left"
    return tok


def _tiny_model_dir(root: Path, family: str, tokenizer) -> Path:
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, RobertaConfig, RobertaForQuestionAnswering, XLMRobertaConfig, XLMRobertaForQuestionAnswering

    torch.manual_seed(0)
    common = dict(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id,
    )
    if family == "bert":
        model = BertForQuestionAnswering(BertConfig(**common))
    elif family == "roberta":
        model = RobertaForQuestionAnswering(RobertaConfig(**common, type_vocab_size=1, bos_token_id=0, eos_token_id=2))
    else:
        model = XLMRobertaForQuestionAnswering(XLMRobertaConfig(**common, type_vocab_size=1, bos_token_id=0, eos_token_id=2))
    folder = root / f"tiny-{family}"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return _tiny_model_dir(tmp_path_factory.mktemp("models"), "bert", build_wordpiece())


@pytest.fixture(scope="session")
def reader(tiny_bert_dir):
    """A :class:`~spanqa.Reader` over the tiny random BERT on the CPU in fp32, loaded once for the session
    (tests that need other settings take ``reader.with_settings(...)``, which shares the model).

    fp32 whatever the CPU (the default is bf16 on CPUs with native bf16): its scores are the exact ones
    ``evaluate`` gives on the CPU, and the same on every machine."""
    from spanqa import Reader

    return Reader.from_pretrained(tiny_bert_dir, device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def tiny_roberta_dir(tmp_path_factory) -> Path:
    return _tiny_model_dir(tmp_path_factory.mktemp("models"), "roberta", build_byte_bpe())


@pytest.fixture(scope="session")
def tiny_xlmr_dir(tmp_path_factory) -> Path:
    return _tiny_model_dir(tmp_path_factory.mktemp("models"), "xlmr", build_sentencepiece())


@pytest.fixture(scope="session")
def sample_train() -> Path:
    return sample_path("train")


@pytest.fixture(scope="session")
def sample_dev() -> Path:
    return sample_path("dev")


@pytest.fixture
def fresh_cli_logging():
    """The CLI attaches a stderr handler to the 'spanqa' logger once; drop it so each run logs to its own stderr."""
    import logging

    logger = logging.getLogger("spanqa")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    logger.handlers.clear()
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory) -> str:
    """A tiny WordPiece tokenizer folder, with the config.json model folders need (`data check` measures lengths with it)."""
    from transformers import BertConfig

    folder = tmp_path_factory.mktemp("tok")
    tokenizer = build_wordpiece()
    tokenizer.save_pretrained(folder)
    BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def clean_serve_environment(monkeypatch):
    """No SPANQA_SERVE_* variable from the calling shell changes the server tests."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("SPANQA_SERVE_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def bare_encoder_dir(tmp_path_factory, wordpiece_tokenizer):
    """An encoder saved without a QA head, like the default model: the head is initialised on load."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bare") / "encoder"
    config = BertConfig(vocab_size=len(wordpiece_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    wordpiece_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def bert_onnx(tiny_bert_dir, tmp_path_factory) -> Path:
    """One fp32 ONNX export of the tiny BERT, for tests where one family is enough."""
    from spanqa.jobs.export import export_onnx

    return export_onnx(tiny_bert_dir, tmp_path_factory.mktemp("bert-onnx") / "model")
