"""Text <-> token ids for the LM family: characters, UTF-8 bytes, or a byte-level BPE.

Each tokenizer knows its `vocab_size` before any text is read (the backbone is sized from
it before data is touched): a character alphabet is declared by the dataset, bytes are
256, and BPE's size is a config value (training may produce fewer merges; the unused ids
simply stay unused). BPE is trained with Hugging Face `tokenizers` on the training split
only, locally (no hub), and saved beside the token cache.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from labformer.errors import UserError

# Printable ASCII, tab and newline, plus U+FFFD for anything else: generic English/code text.
ASCII_ALPHABET = "\t\n" + "".join(chr(c) for c in range(32, 127)) + "\ufffd"
UNKNOWN = "\ufffd"


class CharTokenizer:
    """One id per character of `alphabet`; characters outside map to U+FFFD if the alphabet
    has it, and are an error otherwise (e.g. tiny-shakespeare's exact 65-character set)."""

    def __init__(self, alphabet: str) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet has repeated characters")
        self.alphabet = alphabet
        self.vocab_size = len(alphabet)
        self.unknown = alphabet.index(UNKNOWN) if UNKNOWN in alphabet else None
        table = np.full(0x110000 if self.unknown is not None else max(map(ord, alphabet)) + 1,
                        -1 if self.unknown is None else self.unknown, dtype=np.int32)
        table[[ord(c) for c in alphabet]] = np.arange(len(alphabet))
        self._table = table

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if self.unknown is None:
            bad = codes >= len(self._table)
            ids = np.where(bad, -1, self._table[np.minimum(codes, len(self._table) - 1)])
            if (ids < 0).any():
                chars = sorted({chr(c) for c in codes[ids < 0][:1000]})
                raise UserError(f"text has characters outside the dataset's alphabet: {chars[:10]}; "
                                f"use data.tokenizer=byte or bpe for this text")
            return ids
        return self._table[np.minimum(codes, len(self._table) - 1)]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[int(i)] if 0 <= int(i) < self.vocab_size else UNKNOWN for i in ids)


class ByteTokenizer:
    """UTF-8 bytes: 256 ids, any text, nothing to train."""

    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenisation) from Hugging Face `tokenizers`."""

    def __init__(self, vocab_size: int, path: Path, train_text: str | None = None) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise UserError(f"data.vocab_size={vocab_size} is too small for byte-level BPE; use >= 257")
        self.vocab_size = vocab_size
        if path.is_file():
            self._tok = Tokenizer.from_file(str(path))
        else:
            if train_text is None:
                raise FileNotFoundError(path)
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            # Chunks of lines: the trainer counts words per chunk, the split points do not matter.
            lines = train_text.splitlines(keepends=True)
            tok.train_from_iterator(("".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)), trainer)
            self._tok = tok
            if path.parent.is_dir() and os.access(path.parent, os.W_OK):
                tmp = path.with_suffix(".tmp")
                tok.save(str(tmp))
                tmp.replace(path)
        if self._tok.get_vocab_size() > vocab_size:
            raise UserError(f"{path} holds {self._tok.get_vocab_size()} tokens, more than data.vocab_size="
                            f"{vocab_size}; delete it to retrain")

    def encode(self, text: str) -> np.ndarray:
        lines = text.splitlines(keepends=True)
        chunks = ["".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000)]
        ids = [np.asarray(e.ids, dtype=np.int64) for e in self._tok.encode_batch(chunks)]
        return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])
