"""`callbacks.analyse=[attention,atman,pairs,project]`: the tools of `python -m labformer analyse` run by the
training run itself, on its best weights, so the pictures are there without a second command.

Checked when fit starts (`setup`): a name that is no tool, or a tool that does not apply to the run's model
(pairs on a non-siamese run, attention on a model without recordable attention), is a UserError before any
training step. Run once, when fit ends: the best checkpoint's weights (the ones the test pass loads next,
and the ones `analyse <best checkpoint>` reads) go into the trained module for the analysis, on the CPU in
eval mode as the command runs it, and the module, its device and the random generators are put back
afterwards, so the test pass and the run's record are as without it. At fit end rather than after the test
pass because a run has no test pass with test=false, nor where the pipeline answers the test from a
validation (callbacks/validation_memory.py). The files are the command's (attention_maps.png/.npz,
atman_relevance.*, pair_attribution.*, logit_lens.*), in the run directory; their pictures go to the run's
W&B logger as `analysis/<file stem>`. A failure of the analysis itself is logged, and never fails the run.
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Sequence

import lightning as L
import torch
from omegaconf import OmegaConf

from labformer.analysis.command import TOOLS, check_tools, run_tools
from labformer.analysis.rebuild import Rebuilt
from labformer.callbacks.rng_state import RNGStateCallback
from labformer.errors import UserError, unknown_choice

log = logging.getLogger("labformer")


def tool_names(given: Any) -> list[str]:
    """The tools of callbacks.analyse (a list, or one name) in the order they run; unknown names: UserError."""
    names = [given] if isinstance(given, str) else list(given or [])
    for name in names:
        if name not in TOOLS:
            raise unknown_choice("callbacks.analyse tool", str(name), TOOLS,
                                 "e.g. callbacks.analyse=[attention] (an empty list [] analyses nothing)")
    return [t for t in TOOLS if t in names]


def applicable(run: Any, suppression: float = 0.9) -> list[str]:
    """The tools whose checks pass on `run`."""
    ok = []
    for tool in TOOLS:
        try:
            check_tools(run, [tool], suppression)
        except UserError:
            continue
        ok.append(tool)
    return ok


def log_pictures(pictures: Iterable[Path], loggers: Sequence[Any]) -> list[str]:
    """Each picture into every W&B logger of the run as `analysis/<file stem>` (the command's keys)."""
    from lightning.pytorch.loggers import WandbLogger

    keys = []
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            for png in pictures:
                logger.log_image(key=f"analysis/{png.stem}", images=[str(png)])
                keys.append(f"analysis/{png.stem}")
    return keys


class Analysis(L.Callback):
    def __init__(self, tools: Any, run_dir: Path, batch: int = 8) -> None:
        self.tools = tool_names(tools)
        self.run_dir, self.batch = Path(run_dir), batch
        self.checked = False

    @staticmethod
    def view(pl_module: L.LightningModule, datamodule: Any, path: Path) -> Rebuilt:
        """The training run as the tools see a rebuilt checkpoint: its resolved config, data and module."""
        return Rebuilt(path, OmegaConf.create(getattr(pl_module, "run_config", None) or {}), datamodule, pl_module)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.tools or self.checked or stage != "fit":
            return
        run = self.view(pl_module, trainer.datamodule, self.run_dir)
        for tool in self.tools:
            try:
                check_tools(run, [tool])
            except UserError as e:
                ok = applicable(run)
                fix = (f"Tools that apply to it: {', '.join(ok)} (e.g. callbacks.analyse=[{','.join(ok)}])" if ok
                       else "No analysis tool applies to it: leave callbacks.analyse=[] (the default)")
                raise UserError(f"callbacks.analyse: {tool} does not apply to this run: {e}\n{fix}") from None
        self.checked = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.tools or trainer.fast_dev_run or not trainer.is_global_zero:
            return
        wait = getattr(trainer.strategy.checkpoint_io, "wait", None)
        if callable(wait):
            wait()  # the best checkpoint may still be on its way to disk
        checkpoint = trainer.checkpoint_callback
        best = Path(checkpoint.best_model_path) if checkpoint is not None and checkpoint.best_model_path else None
        try:
            lines, files = self.analyse(trainer, pl_module, best)
        except Exception as e:  # the files are a convenience: a trained run's record and test still come first
            log.error("callbacks.analyse=[%s] failed (%s: %s); the run goes on. Retry with: python -m labformer "
                      "analyse %s %s", ",".join(self.tools), type(e).__name__, e, best or "<checkpoint>",
                      " ".join(f"--{t}" for t in self.tools), exc_info=not isinstance(e, UserError))
            return
        lines += [f"wrote {f}" for f in files]
        keys = log_pictures([f for f in files if f.suffix == ".png"], trainer.loggers)
        if keys:
            lines.append(f"W&B: {', '.join(keys)}")
        log.info("analysis (callbacks.analyse) of %s:\n%s", best.name if best else "the last epoch's weights",
                 "\n".join(lines))

    def analyse(self, trainer: L.Trainer, module: L.LightningModule, best: Path | None) -> tuple[list, list]:
        """The tools on `best`'s weights (the last epoch's without one); the module is put back afterwards."""
        from labformer.utils.checkpoint_io import read_checkpoint

        device, modes = module.device, {m: m.training for m in module.modules()}
        kept = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        grads = {name: p.requires_grad for name, p in module.named_parameters()}
        rng = RNGStateCallback().state_dict()
        # A compiled backbone (compile=true) runs eagerly here: hooks see every module, as in the command.
        stance = getattr(torch.compiler, "set_stance", None)
        try:
            with stance("force_eager") if stance is not None else nullcontext():
                if best is not None:
                    module.load_state_dict(read_checkpoint(best)["state_dict"])
                module.cpu().eval().requires_grad_(False)  # the tools need gradients of inputs only
                run = self.view(module, trainer.datamodule, best or self.run_dir)
                return run_tools(run, self.tools, self.run_dir, self.batch)
        finally:
            module.load_state_dict(kept)
            module.to(device)
            for m, training in modes.items():  # frozen parts stay in eval mode
                m.train(training)
            for name, p in module.named_parameters():
                p.requires_grad_(grads[name])
            RNGStateCallback().load_state_dict(rng)
