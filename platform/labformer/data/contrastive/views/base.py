"""What the view adapters share: the two-view batch dataset and the checks of `task.views.<modality>`."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import Dataset

from labformer.errors import UserError, close_matches


def reject_unknown(modality: str, unknown: dict[str, Any], valid: Iterable[str], example: str) -> None:
    """A UserError naming the view settings `modality` takes, when `task.views` holds others."""
    if not unknown:
        return
    valid = list(valid)
    keys = sorted(unknown)
    near = [m for k in keys for m in close_matches(k, valid, n=1)]
    prefix = f"task.views.{modality}."
    msg = (f"{prefix}{(', ' + prefix).join(keys)}: not a setting of the {modality} views. "
           f"Valid {modality} view settings: {', '.join(valid)} (e.g. {prefix}{example}).")
    if near:
        msg += f" Did you mean {', '.join(near)}?"
    raise UserError(msg)


def share(name: str, value: float, low_open: bool = False) -> float:
    """`value` as a share in [0, 1] ((0, 1] with `low_open`), or a UserError naming task.views.<name>."""
    value = float(value)
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        bounds = "(0, 1]" if low_open else "[0, 1]"
        raise UserError(f"task.views.{name}={value} must be in {bounds}")
    return value


class ViewDataset(Dataset):
    """Items fetched a batch at a time; a batch is a dict of two views, the labels and (eval) the clean items.

    `fetch(indices)` returns the clean batch and `views(batch, generator)` one augmented copy
    (never changing the clean batch). With `seed` set (validation/test) the views of each batch
    come from a generator seeded by the batch's first index, so metrics repeat exactly.
    """

    def __init__(self, fetch: Callable[[torch.Tensor], Any], labels: torch.Tensor, views: Callable[..., Any],
                 clean: bool, seed: int | None = None, augment: bool = True,
                 prepare: Callable[[Any], Any] | None = None) -> None:
        self.fetch, self.labels, self.views = fetch, labels, views
        self.clean, self.seed, self.augment = clean, seed, augment
        self.prepare = prepare  # the clean item as the encoder sees it (images: normalised)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        items = self.fetch(idx)
        batch: dict[str, Any] = {"y": self.labels[idx]}
        if self.augment:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(idx[0])) if self.seed is not None else None
            batch["views"] = (self.views(items, gen), self.views(items, gen))
        if self.clean:
            batch["x"] = self.prepare(items) if self.prepare is not None else items
        return batch
