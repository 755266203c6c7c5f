"""The language-modelling DataModule contract: text -> tokens (cached as memory-mapped files) -> windows.

Corpora (corpora.py): `python_docs` (embedded: the Python documentation topics that ship
with the interpreter in `pydoc_data`, ~465 KB of English prose and code, no download),
`tinyshakespeare` (Karpathy's 1.1 MB corpus: first 90% of characters train, last 10%
validation, as in char-rnn/nanoGPT) and `text_folder` (your .txt files).

Contract: right after `__init__`, before any file is read, a DataModule knows `name`,
`objective` ("causal_lm"), `vocab_size`, `context` (the window length) and
`num_classes` (None), which size the backbone. `setup()` reads the text once, splits it
by characters, tokenises each split and caches the ids as `<cache_dir>/<key>-<split>.bin`
(np.memmap; key = tokenizer + hash of the text and split fractions), written atomically.
Training batches are random contiguous windows (`steps_per_epoch` batches per epoch);
validation and test cover their split sequentially, every token predicted exactly once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from labformer.data.lm.tokenizers import ASCII_ALPHABET, BPETokenizer, ByteTokenizer, CharTokenizer
from labformer.errors import UserError
from labformer.utils.atomic_files import write_atomic

log = logging.getLogger("labformer")
IGNORE = -100  # targets with this id (padding of the last window) are not scored

Tokenizer = Literal["char", "byte", "bpe"]


class RandomWindows(Dataset):
    """Each item is a whole batch (x, y) of `batch_size` random windows: y is x shifted by one.

    Starts come from torch's global RNG (seeded by seed_everything, restored on resume). Under
    DDP every rank draws the same `world * batch_size` starts, so the RNG streams stay in step,
    and keeps its own slice, so ranks see different windows; the length is `steps * world`
    because Lightning's distributed sampler then hands each rank `steps` items.
    """

    def __init__(self, tokens: np.ndarray, context: int, batch_size: int, steps: int, rank: int = 0,
                 world: int = 1) -> None:
        if len(tokens) < context + 2:
            raise UserError(f"the training split has {len(tokens)} tokens, fewer than data.context+2="
                            f"{context + 2}; use a smaller data.context or more text")
        self.tokens, self.context, self.batch_size, self.steps = tokens, context, batch_size, steps
        self.rank, self.world = rank, world
        self.offsets = np.arange(context + 1)

    def __len__(self) -> int:
        return self.steps * self.world

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.tokens) - self.context, (self.world * self.batch_size,)).numpy()
        starts = starts[self.rank * self.batch_size: (self.rank + 1) * self.batch_size]
        chunk = torch.from_numpy(np.asarray(self.tokens[starts[:, None] + self.offsets], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]


class SequentialWindows(Dataset):
    """Window i: x = tokens[iT : iT+T], y = tokens[iT+1 : iT+T+1]; the last one padded (y = IGNORE)."""

    def __init__(self, tokens: np.ndarray, context: int) -> None:
        self.tokens, self.context = tokens, context
        self.n = max(0, -(-(len(tokens) - 1) // context))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = i * self.context, self.context
        chunk = torch.from_numpy(np.asarray(self.tokens[s: s + t + 1], dtype=np.int64))
        x, y = chunk[:-1], chunk[1:]
        if len(y) < t:
            x = torch.cat([x, torch.zeros(t - len(x), dtype=torch.long)])
            y = torch.cat([y, torch.full((t - len(y),), IGNORE, dtype=torch.long)])
        return x, y


class TextLMDataModule(L.LightningDataModule):
    """Shared logic; a subclass sets `name` (and `alphabet`) and implements `read_splits`."""

    name: str
    objective = "causal_lm"
    causal = True  # next-token prediction: the backbone may only look back
    num_classes = None
    alphabet: str = ASCII_ALPHABET  # the char tokenizer's symbols

    def __init__(self, data_dir: str | Path = "data", context: int = 64, batch_size: int = 12,
                 eval_batch_size: int = 64, steps_per_epoch: int = 100, tokenizer: Tokenizer = "char",
                 vocab_size: int | None = None, val_fraction: float = 0.05, test_fraction: float = 0.05,
                 cache_dir: str | None = None, download: bool = True, num_workers: int = 0) -> None:
        """context: tokens per window (the model's max_len); batch_size: random training windows
        per step; eval_batch_size: validation/test windows per batch (they cover the split in
        order); steps_per_epoch: training batches between validations; tokenizer: char (the
        corpus alphabet + one unknown symbol) | byte | bpe (trained locally, needs vocab_size);
        val_fraction / test_fraction: shares of the characters, taken from the end (test 0:
        the test split is the validation split); cache_dir: token cache (default
        <data_dir>/<name>/cache)."""
        super().__init__()
        for key, ok in (("context", context >= 1), ("batch_size", batch_size >= 1),
                        ("eval_batch_size", eval_batch_size >= 1), ("steps_per_epoch", steps_per_epoch >= 1),
                        ("val_fraction", 0 < val_fraction < 1), ("test_fraction", 0 <= test_fraction < 1),
                        ("val_fraction", val_fraction + test_fraction < 1), ("num_workers", num_workers >= 0)):
            if not ok:
                raise UserError(f"data.{key} is out of range for dataset '{self.name}' ({locals()[key]!r}). "
                                "Fix: context, batch sizes, steps_per_epoch >= 1; 0 < val_fraction, "
                                "0 <= test_fraction, val_fraction + test_fraction < 1")
        if tokenizer not in ("char", "byte", "bpe"):
            raise UserError(f"data.tokenizer={tokenizer!r} is unknown; use char, byte or bpe")
        if tokenizer == "bpe" and vocab_size is None:
            raise UserError("data.tokenizer=bpe needs data.vocab_size (e.g. data.vocab_size=1024)")
        self.data_dir = Path(data_dir).expanduser()
        self.context, self.batch_size, self.eval_batch_size = context, batch_size, eval_batch_size
        self.steps_per_epoch, self.tokenizer_name, self.num_workers = steps_per_epoch, tokenizer, num_workers
        self.val_fraction, self.test_fraction, self.download = val_fraction, test_fraction, download
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / self.name / "cache"
        self.vocab_size = {"char": len(self.alphabet), "byte": 256, "bpe": vocab_size}[tokenizer]
        self.tokenizer: CharTokenizer | ByteTokenizer | BPETokenizer | None = None
        self.tokens: dict[str, np.ndarray] = {}
        self.chars_per_token: dict[str, float] = {}
        self.test_is_val = False
        self.val_batches: int | None = None  # set by the lm task (task.val_batches): validate on an estimate
        self._val_generator = torch.Generator().manual_seed(0)

    # -- per dataset ---------------------------------------------------------------------
    def read_text(self) -> str:
        """The whole corpus (split by `split_text`); or override `read_splits`."""
        raise NotImplementedError

    def read_splits(self) -> dict[str, str]:
        return self.split_text(self.read_text())

    def split_text(self, text: str) -> dict[str, str]:
        """First (1 - val - test) of the characters train, then val, then test (test = val if empty)."""
        n = len(text)
        a = int(n * (1 - self.val_fraction - self.test_fraction))
        b = int(n * (1 - self.test_fraction))
        splits = {"train": text[:a], "val": text[a:b], "test": text[b:]}
        if not splits["test"]:
            splits["test"] = splits["val"]
        return splits

    # -- tokenising and the cache --------------------------------------------------------
    def _make_tokenizer(self, train_text: str, key: str):
        if self.tokenizer_name == "char":
            return CharTokenizer(self.alphabet)
        if self.tokenizer_name == "byte":
            return ByteTokenizer()
        return BPETokenizer(self.vocab_size, self.cache_dir / f"bpe{self.vocab_size}-{key}.json", train_text)

    def _cache_writable(self) -> bool:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            return os.access(self.cache_dir, os.W_OK)
        except OSError:
            return False

    def setup(self, stage: str | None = None) -> None:
        if self.tokens:
            return
        splits = self.read_splits()
        self.test_is_val = splits["test"] == splits["val"]  # no test split of its own (pipeline skips a repeat)
        digest = hashlib.sha256()
        for split in ("train", "val", "test"):
            digest.update(splits[split].encode("utf-8", errors="surrogatepass") + b"\x00")
        tag = self.tokenizer_name + (str(self.vocab_size) if self.tokenizer_name == "bpe" else "")
        key = digest.hexdigest()[:16]
        writable = self._cache_writable()
        if not writable:
            log.warning("token cache %s is not writable: tokenising in memory", self.cache_dir)
        self.tokenizer = self._make_tokenizer(splits["train"], key)
        dtype = np.uint16 if self.vocab_size <= 1 << 16 else np.int32
        meta_path = self.cache_dir / f"{tag}-{key}-meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        for split, text in splits.items():
            path = self.cache_dir / f"{tag}-{key}-{split}.bin"
            if writable and path.is_file() and split in meta:
                self.tokens[split] = np.memmap(path, dtype=dtype, mode="r")
            else:
                ids = self.tokenizer.encode(text)
                if len(ids) and ids.max() >= self.vocab_size:
                    raise UserError(f"token id {ids.max()} >= vocab_size {self.vocab_size}")
                ids = ids.astype(dtype)
                if writable:
                    write_atomic(path, ids.tobytes())
                    self.tokens[split] = np.memmap(path, dtype=dtype, mode="r")
                else:
                    self.tokens[split] = ids
                meta[split] = {"characters": len(text), "tokens": int(len(ids))}
        if writable:
            write_atomic(meta_path, json.dumps(meta, indent=1).encode())
        self.chars_per_token = {s: m["characters"] / max(1, m["tokens"]) for s, m in meta.items()}

    def tokens_per_character(self, split: str) -> float:
        """For bits per character: loss per token * tokens per character / ln 2."""
        return 1.0 / self.chars_per_token.get(split, 1.0)

    # -- generation helpers (the sampling callback) ---------------------------------------
    def encode(self, text: str) -> torch.Tensor:
        self.setup()
        return torch.from_numpy(self.tokenizer.encode(text).astype(np.int64))

    def decode(self, ids) -> str:
        self.setup()
        return self.tokenizer.decode(ids)

    def sample_prompt(self) -> str:
        """The first line of the validation text: a realistic start for generated samples."""
        self.setup()
        first = self.decode(self.tokens["val"][: self.context])
        return first.split("\n", 1)[0][:40] or "\n"

    # -- loaders -------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.setup()
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        data = RandomWindows(self.tokens["train"], self.context, self.batch_size, self.steps_per_epoch, rank, world)
        return DataLoader(data, batch_size=None, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def _eval_loader(self, split: str) -> DataLoader:
        self.setup()
        return DataLoader(SequentialWindows(self.tokens[split], self.context), batch_size=self.eval_batch_size,
                          shuffle=False, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        if not self.val_batches:
            return self._eval_loader("val")
        # An estimate (task.val_batches): that many random batches of windows, drawn anew at each validation
        # from a generator of its own (the training stream's random state stays untouched).
        windows = SequentialWindows(self.tokens["val"], self.context)
        draws = RandomSampler(windows, num_samples=min(len(windows), self.val_batches * self.eval_batch_size),
                              generator=self._val_generator)
        return DataLoader(windows, batch_size=self.eval_batch_size, sampler=draws, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def describe(self) -> str:
        sizes = " / ".join(f"{s} {len(t)}" for s, t in self.tokens.items()) if self.tokens else "not loaded yet"
        return (f"{self.name}: tokens {sizes}, {self.tokenizer_name} vocab {self.vocab_size}, "
                f"context {self.context}, batch {self.batch_size}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    __str__ = __repr__  # LightningDataModule.__str__ would build every dataloader

