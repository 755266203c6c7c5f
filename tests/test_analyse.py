"""`python -m labformer analyse <ckpt> --attention` on tiny real runs: the recorded probabilities
against hand computations, the files it writes, and its errors."""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch

from labformer import pipeline
from labformer.__main__ import main
from labformer.analysis.attention import find_attention, record_attention, recording
from labformer.analysis.command import analyse
from labformer.analysis.outputs import WANDB_VARS, log_to_wandb
from labformer.analysis.rebuild import first_items, rebuild
from labformer.errors import UserError
from labformer.layers.attention import build_attention
from labformer.utils.forecast_plot import pyplot

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false"]
TINY_LM = ["task=lm", "model.depth=2", "model.dim=32", "model.num_heads=2", "data.context=32", "task.sample_tokens=0"]
N = 3  # items analysed


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `python -m labformer <args>` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    cfg = compose_config(*TINY_LM, *QUICK, "run_id=lm", f"data.cache_dir={tmp / 'cache'}", log_dir=tmp / "logs")
    return pipeline.train(cfg)


@pytest.fixture(scope="module")
def lm_maps(lm_run):
    """The command on the LM's best checkpoint, writing into its run directory (the default --out)."""
    out = analyse(lm_run.best_ckpt, attention=True, batch=N)
    with np.load(lm_run.run_dir / "attention_maps.npz") as npz:
        return out, {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("causal", [True, False])
def test_recording_softmax_attention_keeps_its_output_and_restores_the_fast_path(causal):
    torch.manual_seed(0)
    attn = build_attention("softmax", dim=16, num_heads=2, causal=causal, max_len=32).eval()
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        fast = attn(x)
        found = find_attention(torch.nn.Sequential(attn))
        with recording(found) as calls:
            recorded = attn(x)
    assert torch.allclose(recorded, fast, atol=1e-5), (recorded - fast).abs().max()
    assert len(calls) == 1 and calls[0][1].shape == (2, 2, 11, 11)
    assert attn.record is False and attn.probs is None  # back to the class defaults: SDPA only


def test_lm_maps_are_written_into_the_run_directory_with_one_array_per_layer(lm_run, lm_maps):
    out, arrays = lm_maps
    png, npz = lm_run.run_dir / "attention_maps.png", lm_run.run_dir / "attention_maps.npz"
    assert f"wrote {png}" in out and f"wrote {npz}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert sorted(arrays) == ["layer0", "layer1"]  # model.depth=2
    for probs in arrays.values():
        assert probs.shape == (N, 2, 32, 32) and probs.dtype == np.float32  # [items, heads, T, T]
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
        assert not np.triu(probs, k=1).any()  # causal: no query sees a later key
        assert (probs[..., np.tril(np.ones((32, 32), bool))] > 0).all()  # ... and every earlier one


def test_lm_recorded_attention_equals_a_hand_computation(lm_run, lm_maps):
    _, arrays = lm_maps
    run = rebuild(lm_run.best_ckpt)
    split, tokens = first_items(run.datamodule, N)
    assert split == "test" and tokens.shape == (N, 32)
    attn = run.module.backbone.blocks[0].attn
    seen = {}
    handle = attn.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        run.module(tokens)  # the fast path: nothing recorded
        handle.remove()
        q, k, _ = attn.qkv(seen["x"]).view(N, 32, 3, 2, 16).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1) / math.sqrt(16)
    scores = scores.masked_fill(torch.ones(32, 32, dtype=torch.bool).triu(1), float("-inf"))
    np.testing.assert_allclose(arrays["layer0"], scores.softmax(-1).numpy(), atol=1e-6)


def test_vision_maps_cover_every_vit_block_and_equal_timms_probabilities(tmp_path, capsys):
    cfg = compose_config(*QUICK, "run_id=vit", log_dir=tmp_path / "logs")  # the default: vit_nano on digits
    result = pipeline.train(cfg)
    code, out, _ = cli(capsys, "analyse", result.best_ckpt, "--attention", "--batch", str(N),
                       "--out", str(tmp_path / "maps"))
    assert code == 0 and f"wrote {tmp_path / 'maps' / 'attention_maps.png'}" in out
    with np.load(tmp_path / "maps" / "attention_maps.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert sorted(arrays) == [f"layer{i}" for i in range(4)]  # vit_nano: 4 blocks
    for probs in arrays.values():
        assert probs.shape == (N, 4, 17, 17)  # 4 heads; 16 patches of a 16 px digit + the class token
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)

    run = rebuild(result.best_ckpt)
    _, images = first_items(run.datamodule, N)
    vit = run.module.backbone
    with torch.no_grad():
        before = run.module(images)
        x = vit.blocks[0].norm1(vit._pos_embed(vit.patch_embed(images)))  # block 0's attention input
        q, k, _ = vit.blocks[0].attn.qkv(x).view(N, 17, 3, 4, 16).permute(2, 0, 3, 1, 4)
        np.testing.assert_allclose(arrays["layer0"], (q @ k.transpose(-2, -1) / 4.0).softmax(-1).numpy(),
                                   atol=1e-6)
        found = find_attention(run.module)
        fused = [m.fused_attn for _, m in found.recorded]
        layers = record_attention(run.module, images, found)
        assert [m.fused_attn for _, m in found.recorded] == fused  # timm's fast path is back
        assert torch.allclose(run.module(images), before, atol=1e-5)
    np.testing.assert_allclose(layers[3][1].numpy(), arrays["layer3"], atol=1e-6)


def test_a_model_whose_attention_never_forms_the_matrix_is_a_clear_error(tmp_path, capsys):
    cfg = compose_config(*TINY_LM, *QUICK, "model.attention=performer", "model.depth=1", "run_id=performer",
                         f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path / "logs")
    result = pipeline.train(cfg)
    code, _, err = cli(capsys, "analyse", result.best_ckpt, "--attention")
    assert code == 2
    assert "model.attention=performer" in err and "PerformerAttention" in err
    assert "softmax" in err and "timm's ViT Attention" in err  # what can be analysed
    assert not (result.run_dir / "attention_maps.png").exists()


def test_a_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "runs" / "gone" / "checkpoints" / "last.ckpt"
    code, out, err = cli(capsys, "analyse", str(missing), "--attention")
    assert code == 2 and not out
    assert f"checkpoint {missing} does not exist" in err and "logs/runs/<run_id>/checkpoints/last.ckpt" in err
    corrupt = tmp_path / "torn.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=f"checkpoint {corrupt} cannot be read.*corrupt or truncated"):
        analyse(corrupt, attention=True)
    with pytest.raises(UserError, match="nothing to analyse.*--attention"):
        analyse(corrupt)


def test_the_picture_goes_to_wandb_only_for_wandb_runs_and_never_fails(tmp_path, monkeypatch):
    png = tmp_path / "attention_maps.png"
    pyplot().imsave(png, np.eye(4))
    assert log_to_wandb(png, {"logger": {"name": "csv"}, "run_id": "r"}, tmp_path) is None
    wandb = pytest.importorskip("wandb")
    for var in WANDB_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    line = log_to_wandb(png, {"logger": {"name": "wandb", "project": "p"}, "run_id": "r"}, tmp_path)
    assert line and "wandb sync" in line, line
    assert list((tmp_path / "wandb").glob("offline-run-*-r/files/media/images/analysis/attention_maps_*.png"))
    assert not [v for v in WANDB_VARS if v in os.environ]  # the environment is as it was

    def broken(**kwargs):
        raise RuntimeError("no W&B service")

    monkeypatch.setattr(wandb, "init", broken)  # a failing W&B never fails the analysis
    assert log_to_wandb(png, {"logger": {"name": "wandb"}, "run_id": "r"}, tmp_path) is None
    monkeypatch.setitem(sys.modules, "wandb", None)  # nor does a missing one
    assert log_to_wandb(png, {"logger": {"name": "wandb"}, "run_id": "r"}, tmp_path) is None
