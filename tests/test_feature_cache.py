"""Tokenized windows cached on disk: the same windows back, a new key for any change, damage rebuilt."""

from __future__ import annotations

import numpy as np

from spanqa import WindowConfig, build_features, load_examples
from spanqa.jobs.feature_cache import cached_features, features_key


def _same(a, b) -> None:
    assert a.input_ids == b.input_ids and a.attention_mask == b.attention_mask and a.token_type_ids == b.token_type_ids
    for name in ("example_index", "offsets", "cls_index", "start_positions", "end_positions"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_cached_windows_equal_fresh_ones(any_tokenizer, sample_train, tmp_path):
    examples = load_examples(sample_train).examples
    window = WindowConfig(max_length=128, stride=32)
    fresh = build_features(examples, any_tokenizer, window)
    first = cached_features(examples, any_tokenizer, window, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    second = cached_features(examples, any_tokenizer, window, tmp_path)
    _same(fresh, first)
    _same(fresh, second)


def test_any_change_gives_a_new_key(wordpiece_tokenizer, sample_train):
    from conftest import build_byte_bpe

    examples = load_examples(sample_train).examples
    window = WindowConfig(max_length=128, stride=32)
    key = features_key(examples, wordpiece_tokenizer, window)
    assert key == features_key(examples, wordpiece_tokenizer, WindowConfig(max_length=128, stride=32))
    assert key != features_key(examples, wordpiece_tokenizer, WindowConfig(max_length=128, stride=16))
    assert key != features_key(examples[1:], wordpiece_tokenizer, window)
    assert key != features_key(examples, build_byte_bpe(), window)


def test_a_damaged_cache_file_is_rebuilt(wordpiece_tokenizer, sample_train, tmp_path):
    examples = load_examples(sample_train).examples
    window = WindowConfig(max_length=128, stride=32)
    cached_features(examples, wordpiece_tokenizer, window, tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a numpy file")
    _same(build_features(examples, wordpiece_tokenizer, window), cached_features(examples, wordpiece_tokenizer, window, tmp_path))
