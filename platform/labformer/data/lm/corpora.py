"""The corpora of the language-modelling family (contract in base.py)."""
from __future__ import annotations

from pathlib import Path

from labformer.data.files import RemoteFile, locate
from labformer.data.lm.base import TextLMDataModule
from labformer.errors import UserError
from labformer.registry import register


# Small: 10 epochs of 15 steps take about half a minute on a CPU.
@register("python_docs", task="lm", kind="dataset", embedded=True,
          args=dict(steps_per_epoch=15, val_fraction=0.02, test_fraction=0.02))
class PythonDocsDataModule(TextLMDataModule):
    """The interpreter's own documentation topics (`pydoc_data.topics`), sorted by topic name."""

    name = "python_docs"

    def read_text(self) -> str:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))


# nanoGPT's split (last 10% validation, which is also the test split) and its evaluation interval.
@register("tinyshakespeare", task="lm", kind="dataset", embedded=False,
          args=dict(steps_per_epoch=250, val_fraction=0.1, test_fraction=0.0))
class TinyShakespeareDataModule(TextLMDataModule):
    """40,000 lines of Shakespeare (Karpathy's char-rnn corpus), its exact 65-character alphabet."""

    name = "tinyshakespeare"
    alphabet = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    FILE = RemoteFile("input.txt",
                      "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                      "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")

    def prepare_data(self) -> None:
        locate(self.name, [self.FILE], self.data_dir, download=self.download)

    def read_text(self) -> str:
        folder = locate(self.name, [self.FILE], self.data_dir, download=self.download)
        return (folder / self.FILE.name).read_text(encoding="utf-8")


@register("text_folder", task="lm", kind="dataset", embedded=False, args=dict(tokenizer="byte"))
class TextFolderDataModule(TextLMDataModule):
    """Your text: `train.txt` / `val.txt` (or `valid.txt`) / `test.txt` in `path` are used as the
    splits; otherwise every `*.txt` under `path` (sorted, joined by a blank line) is split by
    characters."""

    name = "text_folder"

    def __init__(self, path: str | None = None, **kwargs) -> None:
        """path: the folder (required), e.g. data.path=/data/my_corpus; the token cache defaults to
        <path>/.labformer-cache. Byte tokens by default: they cover any language (char: printable ASCII)."""
        super().__init__(**kwargs)
        if not path:
            raise UserError("data=text_folder needs the folder of your .txt files: data.path=/path/to/texts")
        self.path = Path(path).expanduser().absolute()
        if self.cache_dir == self.data_dir / self.name / "cache":
            self.cache_dir = self.path / ".labformer-cache"  # beside the data it caches

    def read_splits(self) -> dict[str, str]:
        if not self.path.is_dir():
            raise UserError(f"data.path={self.path} is not a folder; point it at a folder of .txt files")
        named = {s: next((self.path / f for f in names if (self.path / f).is_file()), None)
                 for s, names in (("train", ["train.txt"]), ("val", ["val.txt", "valid.txt"]),
                                  ("test", ["test.txt"]))}
        if named["train"] is not None and named["val"] is not None:
            text = {s: p.read_text(encoding="utf-8", errors="replace") for s, p in named.items() if p}
            text.setdefault("test", text["val"])
            return text
        files = sorted(self.path.rglob("*.txt"))
        files = [f for f in files if ".labformer-cache" not in f.parts]
        if not files:
            raise UserError(f"no .txt files under data.path={self.path}")
        return self.split_text("\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files))
