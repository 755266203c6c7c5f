"""Text views: random token replacement and random contiguous crops of token sequences.

Items are fixed-length token sequences [T] (T = the DataModule's `context`): the labelled
strings of a sequence-classification DataModule (`markov_classes`, labels kept), or a
corpus split cut into consecutive windows of T tokens (a partial last window is left out;
no labels: -1). Per item and independently for each view:
- mask: exactly round(mask * T) positions, chosen at random, get `mask_token` or, when it is
  unset (byte and char vocabularies have no mask symbol), a uniformly random token
  (BERT's corruption without its keep-as-is share)
- crop: a contiguous span of a share u ~ U(crop, 1) of T at a uniform position, moved to the
  front and padded back to T with `pad_token` (0, the id the DataModules pad windows with);
  crop=1 keeps the whole sequence
Documents padded at their end with `pad_token` (a DataModule with `padded_documents = True`,
e.g. long_doc_pairs) are masked and cropped by shares of each document's own length, so a view
never draws from the padding.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from labformer.data.contrastive.views.base import ViewDataset, reject_unknown, share
from labformer.errors import UserError
from labformer.registry import register


def mask_tokens(tokens: torch.Tensor, p: float, vocab_size: int, mask_token: int | None = None,
                generator: torch.Generator | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """tokens[B,T] with round(p * T) random positions per row replaced (by mask_token, else a random id);
    with `lengths` [B] (documents padded at the end), round(p * length) of each row's first `length`."""
    b, t = tokens.shape
    if lengths is not None:
        return _mask_within(tokens, p, vocab_size, mask_token, generator, lengths)
    k = round(p * t)
    if k == 0:
        return tokens
    chosen = torch.rand(b, t, generator=generator).argsort(1)[:, :k]
    if mask_token is None:
        new = torch.randint(0, vocab_size, (b, k), generator=generator, dtype=tokens.dtype)
    else:
        new = torch.full((b, k), mask_token, dtype=tokens.dtype)
    return tokens.scatter(1, chosen, new)


def _mask_within(tokens: torch.Tensor, p: float, vocab_size: int, mask_token: int | None,
                 generator: torch.Generator | None, lengths: torch.Tensor) -> torch.Tensor:
    b, t = tokens.shape
    noise = torch.rand(b, t, generator=generator).masked_fill(torch.arange(t) >= lengths[:, None], 2.0)
    rank = noise.argsort(1).argsort(1)  # the padding ranks last
    chosen = rank < (p * lengths.float()).round().long()[:, None]
    if mask_token is None:
        new = torch.randint(0, vocab_size, (b, t), generator=generator, dtype=tokens.dtype)
    else:
        new = torch.full_like(tokens, mask_token)
    return torch.where(chosen, new, tokens)


def crop_tokens(tokens: torch.Tensor, share_kept: torch.Tensor, offset: torch.Tensor, pad_token: int,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
    """tokens[B,T]: row b keeps round(share_kept[b] * T) (>= 1) consecutive tokens starting at `offset[b]`
    (in [0, 1]) of the free room, moved to the front and padded with pad_token; with `lengths` [B]
    (documents padded at the end) shares of each row's length instead of T."""
    b, t = tokens.shape
    full = torch.full((b,), t) if lengths is None else lengths.clamp(min=1)
    length = (share_kept * full).round().long().clamp(min=1).minimum(full)
    start = (offset * (full - length + 1)).long().minimum(full - length)  # uniform over the full - length + 1 starts
    pos = torch.arange(t)
    src = (start[:, None] + pos).clamp(max=t - 1)
    return torch.where(pos < length[:, None], tokens.gather(1, src), torch.full_like(tokens, pad_token))


def padded_lengths(tokens: torch.Tensor, pad_token: int) -> torch.Tensor:
    """Per row of tokens[B,T], the position after its last token that is not `pad_token`."""
    real = tokens != pad_token
    return torch.where(real.any(1), tokens.shape[1] - real.flip(1).int().argmax(1), 0)


class TextViews:
    def __init__(self, vocab_size: int, mask: float = 0.15, mask_token: int | None = None, crop: float = 0.5,
                 pad_token: int = 0, padded: bool = False) -> None:
        """padded: the items are documents padded at their end with pad_token (the DataModule's
        `padded_documents`): masking and cropping act on each document's own tokens."""
        for name, token in (("mask_token", mask_token), ("pad_token", pad_token)):
            if token is not None and not 0 <= token < vocab_size:
                raise UserError(f"task.views.{name}={token} is not a token id of this vocabulary (0..{vocab_size - 1})")
        self.vocab_size, self.mask_token, self.pad_token = vocab_size, mask_token, pad_token
        self.mask, self.crop = share("mask", mask), share("crop", crop, low_open=True)
        self.padded = padded

    def __call__(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        lengths = padded_lengths(tokens, self.pad_token) if self.padded else None
        x = mask_tokens(tokens, self.mask, self.vocab_size, self.mask_token, generator, lengths)
        if self.crop < 1:
            b = x.shape[0]
            kept = self.crop + (1 - self.crop) * torch.rand(b, generator=generator)
            x = crop_tokens(x, kept, torch.rand(b, generator=generator), self.pad_token, lengths)
        return x


@register("lm", task="contrastive", kind="views")
class TextViewAdapter:
    """Views of a text DataModule: labelled sequences (`sets` of (tokens, label)) or a corpus (`tokens`)."""

    def __init__(self, base, mask: float = 0.15, mask_token: int | None = None, crop: float = 0.5,
                 pad_token: int = 0, **unknown: Any) -> None:
        reject_unknown("lm", unknown, ("mask", "mask_token", "crop", "pad_token"), "mask=0.3")
        self.base = base
        self.labelled = bool(getattr(base, "num_classes", None))  # a corpus has none: known before reading
        padded = bool(getattr(base, "padded_documents", False))  # e.g. long_doc_pairs
        self.views = TextViews(int(base.vocab_size), mask, mask_token, crop, pad_token, padded)

    def split(self, name: str) -> tuple[torch.Tensor | np.ndarray, torch.Tensor]:
        self.base.setup()
        sets = getattr(self.base, "sets", None) or {}
        if isinstance(sets.get(name), TensorDataset):  # sequence classification: (tokens [N,T], labels [N])
            tokens, labels = sets[name].tensors[:2]
            return tokens.long(), labels.long()
        corpus = getattr(self.base, "tokens", None) or {}
        if name not in corpus:
            raise UserError(f"data={self.base.name}: the text views need token sequences (`sets` of labelled "
                            f"sequences or a tokenised corpus); this DataModule has neither for split '{name}'")
        t = int(self.base.context)
        n = len(corpus[name]) // t
        if n == 0:
            raise UserError(f"data={self.base.name}: the {name} split has {len(corpus[name])} tokens, fewer than "
                            f"one window of data.context={t}; lower data.context")
        windows = corpus[name][: n * t].reshape(n, t)  # a view of the (memory-mapped) ids: nothing copied
        return windows, torch.full((n,), -1, dtype=torch.long)

    def dataset(self, split: str, clean: bool, seed: int | None, augment: bool = True) -> Dataset:
        items, labels = self.split(split)
        if isinstance(items, torch.Tensor):
            fetch = items.__getitem__
        else:
            fetch = lambda idx: torch.from_numpy(np.asarray(items[idx.numpy()], dtype=np.int64))  # noqa: E731
        return ViewDataset(fetch, labels, self.views, clean=clean, seed=seed, augment=augment)

    @staticmethod
    def collate(batch: dict[str, Any]) -> dict[str, Any]:
        return batch  # assembled by the dataset
