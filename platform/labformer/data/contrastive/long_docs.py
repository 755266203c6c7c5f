"""long_doc_pairs: long-document matching pairs generated offline from text already on the machine.

A *section* of a corpus is one topic: a headed subsection of the Python documentation
(`corpus=python_docs`, the `pydoc_data.topics` that ship with the interpreter: no download),
or a run of consecutive speeches of tiny-shakespeare (`corpus=tinyshakespeare`, the file
`<data_dir>/tinyshakespeare/input.txt`). Each section with enough text becomes 2 to
`docs_per_section` *documents*: its paragraphs (its sentences when it has too few) are dealt,
in a seeded random order, to the currently shortest document, so the documents are disjoint
samples of the section of about equal length, each keeping the source order and cut at
`context` tokens. Documents of one section match (positive pairs), documents of different
sections do not. Sections are split into train / val / test by their group (a documentation
topic; eight consecutive shakespeare sections), so no test pair shares a topic with training.

Tokens: lowercased words and punctuation (`\\w+|[^\\w\\s]`), the `vocab_size - 4` most frequent of
the training documents (ties alphabetical), after 0 [PAD] (documents are padded at the end),
1 [SEP] (ends every sentence: smith's sentence blocks), 2 [MASK] and 3 [UNK]. Items are the
documents [N, context] with their section as the label (not 0..C-1 within a split); `pairs(split)`
gives fixed evaluation pairs: every same-section pair and as many different-section pairs drawn
with the seed. Everything is deterministic in `seed`.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Literal, get_args

import lightning as L
import numpy as np
import torch
from torch.utils.data import TensorDataset

from labformer.data.files import MissingDataError, locate
from labformer.errors import UserError
from labformer.registry import register

PAD, SEP, MASK, UNK = 0, 1, 2, 3
SPECIALS = ("[PAD]", "[SEP]", "[MASK]", "[UNK]")
WORD = re.compile(r"\w+|[^\w\s]")
UNDERLINE = re.compile(r"^([*=\-~^\"'#+])\1{2,}$")
Corpus = Literal["python_docs", "tinyshakespeare"]
Section = tuple[str, str]  # (group, text)


def python_docs_sections() -> list[Section]:
    """The headed subsections of every documentation topic (heading lines dropped), grouped by topic."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:
        raise MissingDataError("data=long_doc_pairs corpus=python_docs reads the documentation topics that ship "
                               "with Python (<prefix>/lib/python3.X/pydoc_data/topics.py); this interpreter has "
                               "none. Install its standard library in full, or use data.corpus=tinyshakespeare "
                               "with <data_dir>/tinyshakespeare/input.txt") from e
    sections: list[Section] = []
    for topic in sorted(topics):
        lines, body = topics[topic].split("\n"), []
        i = 0
        while i < len(lines):
            line, below = lines[i].strip(), lines[i + 1].strip() if i + 1 < len(lines) else ""
            if line and UNDERLINE.match(below) and len(below) >= len(line):  # a heading: a new section
                sections.append((topic, "\n".join(body)))
                body, i = [], i + 2
                continue
            body.append(lines[i])
            i += 1
        sections.append((topic, "\n".join(body)))
    return [(g, t) for g, t in sections if t.strip()]


def shakespeare_sections(text: str, tokens_per_section: int) -> list[Section]:
    """Runs of consecutive speeches of about `tokens_per_section` tokens; a group is 8 consecutive runs."""
    sections, run, size = [], [], 0
    for speech in re.split(r"\n\s*\n", text):
        run.append(speech)
        size += len(WORD.findall(speech))
        if size >= tokens_per_section:
            sections.append((f"run{len(sections) // 8}", "\n\n".join(run)))
            run, size = [], 0
    return sections


def paragraphs(text: str) -> list[list[list[str]]]:
    """Paragraphs (split at blank lines) -> sentences (split after . ! ?) -> lowercased tokens + [SEP]."""
    out = []
    for par in re.split(r"\n\s*\n", text):
        sentences = [WORD.findall(s.lower()) for s in re.split(r"(?<=[.!?])\s+", " ".join(par.split()))]
        sentences = [s + [SPECIALS[SEP]] for s in sentences if s]
        if sentences:
            out.append(sentences)
    return out


def section_documents(text: str, docs: int, min_tokens: int, max_tokens: int, rng: np.random.RandomState
                      ) -> list[list[str]]:
    """2..`docs` disjoint, about equal samples of a section's paragraphs (module docstring); [] if too short."""
    pars = paragraphs(text)
    units = [sum(p, []) for p in pars]
    k = min(docs, sum(map(len, units)) // min_tokens)
    if k >= 2 and len(units) < k:  # too few paragraphs to deal: deal sentences
        units = [s for p in pars for s in p]
    k = min(k, len(units))
    if k < 2:
        return []
    owner, sizes = np.zeros(len(units), dtype=np.int64), np.zeros(k, dtype=np.int64)
    for u in rng.permutation(len(units)):
        owner[u] = int(sizes.argmin())
        sizes[owner[u]] += len(units[u])
    out = [sum((units[u] for u in np.flatnonzero(owner == d)), [])[:max_tokens] for d in range(k)]
    out = [d for d in out if len(d) >= min_tokens // 2]
    return out if len(out) >= 2 else []


def evaluation_pairs(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, target): every same-label pair (1) and as many distinct random other-label pairs (0)."""
    i, j = np.triu_indices(len(labels), 1)
    same = labels[i] == labels[j]
    rng = np.random.RandomState(seed)
    neg = rng.choice(np.flatnonzero(~same), min(int(same.sum()), int((~same).sum())), replace=False)
    left, right = np.concatenate([i[same], i[np.sort(neg)]]), np.concatenate([j[same], j[np.sort(neg)]])
    return left, right, np.concatenate([np.ones(same.sum()), np.zeros(len(neg))]).astype(np.int64)


@register("long_doc_pairs", task="contrastive", kind="dataset", modality="lm", embedded=True,
          paper="Yang et al., CIKM 2020 (SMITH): long-form document matching; generated here")
class LongDocPairsDataModule(L.LightningDataModule):
    name = "long_doc_pairs"
    causal = False  # documents are read whole (smith's blocks are bidirectional)
    class_disjoint = True  # validation/test sections never appear in training: evaluate by pairs and episodes
    padded_documents = True  # the text views mask and crop inside each document, not its padding
    pad_token, sep_token, mask_token = PAD, SEP, MASK

    def __init__(self, data_dir: str | Path = "data", corpus: Corpus = "python_docs", context: int = 2048,
                 min_doc_tokens: int = 200, docs_per_section: int = 4, vocab_size: int = 4096,
                 val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0, batch_size: int = 32,
                 num_workers: int = 0, download: bool = True) -> None:
        """corpus: python_docs (embedded) | tinyshakespeare (<data_dir>/tinyshakespeare/input.txt); context:
        tokens per document at most (the model's max_len); min_doc_tokens: a section needs twice this to
        give two documents; docs_per_section: documents per section at most; vocab_size: with the 4
        special ids; val_fraction / test_fraction: shares of the sections, whole groups at a time; seed:
        the documents, the vocabulary's data and the split; batch_size: documents per evaluation batch."""
        super().__init__()
        if corpus not in get_args(Corpus):
            raise UserError(f"data.corpus={corpus!r} is unknown; use one of {', '.join(get_args(Corpus))}")
        if (context < 16 or min_doc_tokens < 1 or docs_per_section < 2 or vocab_size < 8 or batch_size < 1
                or not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1)):
            raise UserError("data=long_doc_pairs needs context >= 16, min_doc_tokens >= 1, docs_per_section >= 2, "
                            "vocab_size >= 8, batch_size >= 1 and 0 < val_fraction, test_fraction with "
                            "val_fraction + test_fraction < 1")
        self.data_dir, self.corpus, self.context = Path(data_dir).expanduser(), corpus, context
        self.min_doc_tokens, self.docs_per_section, self.vocab_size = min_doc_tokens, docs_per_section, vocab_size
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.batch_size, self.num_workers, self.download = batch_size, num_workers, download
        self.sets: dict[str, TensorDataset] = {}
        self.vocabulary: list[str] = []
        self.groups_of: dict[str, list[str]] = {}  # the section groups (topics) of each split

    # -- reading and generating ----------------------------------------------------------
    def read_sections(self) -> list[Section]:
        if self.corpus == "python_docs":
            return python_docs_sections()
        from labformer.data.lm.corpora import TinyShakespeareDataModule

        folder = locate("tinyshakespeare", [TinyShakespeareDataModule.FILE], self.data_dir, download=self.download,
                        hint="Or use the embedded corpus: data.corpus=python_docs")
        text = (folder / TinyShakespeareDataModule.FILE.name).read_text(encoding="utf-8")
        return shakespeare_sections(text, 2 * self.docs_per_section * self.min_doc_tokens)

    def prepare_data(self) -> None:
        if self.corpus == "tinyshakespeare":
            self.read_sections()  # fetch (or name) the file before any worker starts

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        documents, labels, groups = [], [], []
        for index, (group, text) in enumerate(self.read_sections()):
            rng = np.random.RandomState([self.seed, index])
            for doc in section_documents(text, self.docs_per_section, self.min_doc_tokens, self.context, rng):
                documents.append(doc)
                labels.append(index)
                groups.append(group)
        split = self.split_groups(groups)
        if min(len(set(np.asarray(labels)[split == s])) for s in range(3)) < 2:
            raise UserError(f"data=long_doc_pairs: too few sections of >= {2 * self.min_doc_tokens} tokens in "
                            f"{self.corpus} for train/val/test; lower data.min_doc_tokens")
        counts = Counter(w for doc, s in zip(documents, split) if s == 0 for w in doc)
        counts.pop(SPECIALS[SEP], None)
        top = sorted(counts, key=lambda w: (-counts[w], w))[: self.vocab_size - len(SPECIALS)]
        self.vocabulary = [*SPECIALS, *top]
        ids = {w: i for i, w in enumerate(self.vocabulary)}
        tokens = np.zeros((len(documents), self.context), dtype=np.int64)
        for r, doc in enumerate(documents):
            tokens[r, :len(doc)] = [ids.get(w, UNK) for w in doc]
        labels, tokens = torch.as_tensor(labels), torch.from_numpy(tokens)
        for s, name in enumerate(("train", "val", "test")):
            rows = torch.from_numpy(np.flatnonzero(split == s))
            self.sets[name] = TensorDataset(tokens[rows], labels[rows])
            self.groups_of[name] = sorted({groups[r] for r in rows.tolist()})

    def split_groups(self, groups: list[str]) -> np.ndarray:
        """Per document 0 (train) / 1 (val) / 2 (test): whole groups in a seeded order, each to the split
        furthest below its share of the documents."""
        names = sorted(set(groups))
        size = Counter(groups)
        share = np.asarray([1 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction])
        held, split_of = np.zeros(3), {}
        for k in np.random.RandomState(self.seed).permutation(len(names)):
            s = int(np.argmax(share * (sum(held) + size[names[k]]) - held))
            split_of[names[k]] = s
            held[s] += size[names[k]]
        return np.asarray([split_of[g] for g in groups], dtype=np.int64)

    # -- what the contrastive family reads -----------------------------------------------
    @property
    def num_classes(self) -> int:
        """Sections of the training split (reads the corpus)."""
        self.setup()
        return len(self.sets["train"].tensors[1].unique())

    def pairs(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fixed (left, right, target) index pairs into `split`'s documents, in loader order."""
        self.setup()
        labels = self.sets[split].tensors[1].numpy()
        return evaluation_pairs(labels, self.seed + {"train": 0, "val": 1, "test": 2}[split])

    def decode(self, ids) -> str:
        self.setup()
        return " ".join(self.vocabulary[int(i)] for i in ids if int(i) != PAD)

    def describe(self) -> str:
        if not self.sets:
            return f"{self.name} ({self.corpus}, not generated yet)"
        sizes = " / ".join(f"{s} {len(d)} docs of {len(d.tensors[1].unique())} sections"
                           for s, d in self.sets.items())
        lengths = (self.sets["train"].tensors[0] != PAD).sum(1).float()
        return (f"{self.name} ({self.corpus}): {sizes}; train documents {lengths.min():.0f}-{lengths.max():.0f} "
                f"tokens (median {lengths.median():.0f}), vocabulary {len(self.vocabulary)}")

    def __repr__(self) -> str:
        return f"LongDocPairsDataModule({self.describe()})"

    __str__ = __repr__
