"""The reference for time to first step: the default run's recipe as a bare Lightning script.

The same model as `python train.py` builds by default (timm's VisionTransformer at the registry's
`vit_nano` sizes, a linear head) on scikit-learn's digits upsampled to 16 px, batch 32, AdamW; a
LightningModule, a Trainer with its defaults (its own progress bar and checkpointing, no logger), no
Hydra, no W&B. It prints the same line as the platform when its first training step is done.

    .venv/bin/python benchmarks/compare/bare_lightning.py [max_steps]
"""
from __future__ import annotations

import sys
import tempfile

import lightning as L
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from timm.models.vision_transformer import VisionTransformer


class Classifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = VisionTransformer(img_size=16, in_chans=1, num_classes=10, patch_size=4, embed_dim=64, depth=4,
                                       num_heads=4, mlp_ratio=2.0)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self.model(images), labels)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.global_step == 1:
            print("first training step done", file=sys.stderr, flush=True)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    images = F.interpolate(images, size=16, mode="bilinear")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.tensor(digits.target)),
                                         batch_size=32, shuffle=True)
    trainer = L.Trainer(max_steps=steps, logger=False, default_root_dir=tempfile.mkdtemp(), accelerator="cpu")
    trainer.fit(Classifier(), loader)


if __name__ == "__main__":
    main()
