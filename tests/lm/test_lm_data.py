"""LM data: tokenizers, the token cache, windows, and each dataset's reader."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from labformer import registry
from labformer.data.lm.base import IGNORE, RandomWindows, SequentialWindows
from labformer.data.lm.markov_classes import markov_strings
from labformer.data.lm.tokenizers import ASCII_ALPHABET, CharTokenizer
from labformer.errors import UserError

DATA_DIR = Path(os.environ.get("LABFORMER_DATA_DIR", "data"))
SHAKESPEARE = DATA_DIR / "tinyshakespeare" / "input.txt"


def make(name: str, tmp_path: Path, **kw):
    return registry.create("lm", name, kind="dataset", data_dir=str(DATA_DIR), cache_dir=str(tmp_path / "cache"),
                           **kw)


def test_char_tokenizer_round_trip_and_unknowns():
    tok = CharTokenizer(ASCII_ALPHABET)
    text = "def f(x):\n\treturn x  # ok"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("naïve")) == "na\ufffdve"  # outside the alphabet: one unknown symbol
    with pytest.raises(UserError, match="outside the dataset's alphabet"):
        CharTokenizer("ab\n").encode("abc")


def test_random_windows_are_contiguous_and_shifted_by_one():
    tokens = np.arange(1000, dtype=np.uint16)
    torch.manual_seed(0)
    x, y = RandomWindows(tokens, context=16, batch_size=5, steps=3)[0]
    assert x.shape == y.shape == (5, 16)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(x[:, 1:] - x[:, :-1], torch.ones(5, 15, dtype=torch.long))
    assert len(RandomWindows(tokens, 16, 5, 3)) == 3


def test_sequential_windows_predict_every_token_exactly_once():
    tokens = np.arange(50, dtype=np.uint16)
    windows = SequentialWindows(tokens, context=8)
    targets = torch.cat([windows[i][1] for i in range(len(windows))])
    assert targets[targets != IGNORE].tolist() == list(range(1, 50))
    x, y = windows[len(windows) - 1]
    assert x.shape == y.shape == (8,)


def test_embedded_default_needs_no_files_and_caches_memmaps(tmp_path):
    dm = make("python_docs", tmp_path, context=32)
    assert (dm.vocab_size, dm.context, dm.objective) == (len(ASCII_ALPHABET), 32, "causal_lm")  # before reading
    dm.setup()
    sizes = {s: len(t) for s, t in dm.tokens.items()}
    assert sizes["train"] > 400_000 and sizes["val"] > 5_000 and sizes["test"] > 5_000
    assert all(isinstance(t, np.memmap) for t in dm.tokens.values())
    assert len(list((tmp_path / "cache").glob("char-*.bin"))) == 3
    again = make("python_docs", tmp_path, context=32)
    again.setup()  # from the cache: same tokens
    assert all(np.array_equal(again.tokens[s], dm.tokens[s]) for s in sizes)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (12, 32) and x.max() < dm.vocab_size


def test_tinyshakespeare_reader_parses_the_real_file(tmp_path):
    if not SHAKESPEARE.is_file():
        print(f"skipped: {SHAKESPEARE} is absent (set LABFORMER_DATA_DIR to a folder holding tinyshakespeare/)")
        pytest.skip(f"{SHAKESPEARE} is absent")
    dm = make("tinyshakespeare", tmp_path, download=False)
    assert dm.vocab_size == 65
    dm.setup()
    n = 1_115_394
    assert len(dm.tokens["train"]) == int(n * 0.9) and len(dm.tokens["val"]) == n - int(n * 0.9)
    assert np.array_equal(dm.tokens["test"], dm.tokens["val"])  # nanoGPT's split has no test part
    assert dm.decode(dm.tokens["train"][:14]) == "First Citizen:"
    assert dm.tokens_per_character("val") == 1.0


def test_missing_tinyshakespeare_names_file_url_and_folder(tmp_path):
    dm = registry.create("lm", "tinyshakespeare", kind="dataset", data_dir=str(tmp_path / "empty"), download=False)
    with pytest.raises(UserError) as e:
        dm.setup()
    assert "input.txt" in str(e.value) and "karpathy/char-rnn" in str(e.value) and "empty" in str(e.value)


def test_bpe_is_trained_on_the_training_split_and_cached(tmp_path):
    dm = make("python_docs", tmp_path, tokenizer="bpe", vocab_size=300)
    assert dm.vocab_size == 300
    dm.setup()
    [saved] = [p for p in (tmp_path / "cache").glob("bpe300-*.json") if not p.stem.endswith("meta")]
    assert json.loads(saved.read_text())["model"]["type"] == "BPE"
    text = "The \"assert\" statement\nAssert statements are a convenient way"
    assert dm.decode(dm.encode(text).tolist()) == text
    assert max(int(t.max()) for t in dm.tokens.values()) < 300
    assert dm.tokens_per_character("val") < 0.8  # merges: fewer tokens than characters


def test_text_folder_uses_named_splits_or_splits_all_files(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("hello world. " * 300)
    (folder / "b.txt").write_text("goodbye moon. " * 300)
    dm = registry.create("lm", "text_folder", kind="dataset", path=str(folder), context=8)
    dm.setup()
    assert dm.vocab_size == 256 and sum(len(t) for s, t in dm.tokens.items() if s != "test") > 7000
    assert (folder / ".labformer-cache").is_dir()  # cached beside the data
    (folder / "train.txt").write_text("abc " * 100)
    (folder / "valid.txt").write_text("abd " * 50)
    named = registry.create("lm", "text_folder", kind="dataset", path=str(folder), context=8, tokenizer="char")
    named.setup()
    assert (len(named.tokens["train"]), len(named.tokens["val"]), len(named.tokens["test"])) == (400, 200, 200)
    with pytest.raises(UserError, match="data.path"):
        registry.create("lm", "text_folder", kind="dataset")


def test_markov_classes_are_deterministic_and_balanced():
    x, y = markov_strings(40, 16, 4, 0.5, seed=3)
    x2, y2 = markov_strings(40, 16, 4, 0.5, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert np.bincount(y).tolist() == [10] * 4
    assert set(np.unique(x)) <= set(b"abcdefghijklmnopqrstuvwxyz ")
    dm = registry.create("lm", "markov_classes", kind="dataset", train_size=20, eval_size=8)
    assert (dm.objective, dm.num_classes, dm.vocab_size) == ("classification", 4, 256)
    dm.setup()
    assert [len(dm.sets[s]) for s in ("train", "val", "test")] == [20, 8, 8]


def test_ddp_ranks_draw_different_windows_from_one_rng_stream():
    tokens = np.arange(10_000, dtype=np.uint16)
    batches, after = [], []
    for rank in range(2):
        torch.manual_seed(0)
        data = RandomWindows(tokens, context=8, batch_size=4, steps=3, rank=rank, world=2)
        assert len(data) == 6  # the distributed sampler gives each rank 3
        batches.append(data[0][0])
        after.append(torch.randint(0, 10**6, (1,)).item())
    assert not torch.equal(batches[0], batches[1])
    assert after[0] == after[1]  # both ranks' RNG streams advanced alike
