"""`python -m labformer analyse <ckpt> --attention` on the graph and time-series families: the default runs
(exphormer on pattern, itransformer on synthetic_seasonal), tokengt (the platform's softmax attention on graphs)
and gcn (no attention): the picture, the numbers behind it against hand computations, and the error."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GATConv

from labformer import pipeline
from labformer.analysis.attention import find_attention, record_maps, recording
from labformer.analysis.inputs import series_token_names
from labformer.analysis.rebuild import first_items, rebuild
from labformer.models.graph.exphormer import ExphormerAttention

from conftest import compose_config
from graph_samples import IN_DIM, tiny_graph
from test_analyse import N, QUICK, cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# pattern's own generator with 1-2 node communities and a 2-node pattern: graphs of ~10 nodes, ~40 tokens in TokenGT
SMALL_PATTERN = ["data.community_size=[1,2]", "data.pattern_size=2", "data.train_graphs=16", "data.val_graphs=8",
                 "data.test_graphs=8", "data.batch_size=4"]


def analysed(capsys, ckpt, out) -> dict[str, np.ndarray]:
    """The command on `ckpt` writing into `out`: its picture checked, its arrays returned."""
    code, stdout, err = cli(capsys, "analyse", str(ckpt), "--attention", "--batch", str(N), "--out", str(out))
    assert code == 0, err
    png = out / "attention_maps.png"
    assert f"wrote {png}" in stdout and f"wrote {out / 'attention_maps.npz'}" in stdout
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    with np.load(out / "attention_maps.npz") as npz:
        return {k: npz[k] for k in npz.files}


def attention_input(module: torch.nn.Module, model: torch.nn.Module, inputs) -> tuple:
    """The arguments `module` is called with in a plain (unrecorded) forward of `model`, and its key_mask if set."""
    seen = {}

    def keep(m: torch.nn.Module, args: tuple) -> None:  # returns nothing: the call goes on unchanged
        seen.setdefault("args", args)
        seen.setdefault("key_mask", getattr(m, "key_mask", None))

    handle = module.register_forward_pre_hook(keep)
    with torch.no_grad():
        model(inputs)
    handle.remove()
    return seen["args"] + ((seen["key_mask"],) if seen["key_mask"] is not None else ())


def test_timeseries_default_itransformer_maps_are_softmax_over_its_variate_tokens(tmp_path, capsys):
    result = pipeline.train(compose_config("task=timeseries", *QUICK, "run_id=series", log_dir=tmp_path / "logs"))
    arrays = analysed(capsys, result.best_ckpt, tmp_path / "maps")
    assert sorted(arrays) == ["layer0", "layer1"]  # itransformer: depth 2
    for probs in arrays.values():
        assert probs.shape == (N, 8, 7, 7) and probs.dtype == np.float32  # 8 heads; 7 variates of synthetic_seasonal
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)

    run = rebuild(result.best_ckpt)
    split, windows = first_items(run.datamodule, N)
    assert split == "test" and windows.shape == (N, 96, 7)  # [items, lookback, channels]
    assert series_token_names(run, 7) == [f"var{c}" for c in range(7)]  # the picture's axis labels
    assert series_token_names(run, 7, per_item=7) is None  # 7 tokens per channel (nutime's windows): no variates
    attn = run.module.backbone.layers[0].attn
    (x,) = attention_input(attn, run.module, windows)
    with torch.no_grad():
        q, k, v = attn.qkv(x).view(N, 7, 3, 8, 16).permute(2, 0, 3, 1, 4)
        probs = (q @ k.transpose(-2, -1) / math.sqrt(16)).softmax(-1)
        np.testing.assert_allclose(arrays["layer0"], probs.numpy(), atol=1e-6)
        mixed = attn.proj((probs @ v).transpose(1, 2).reshape(N, 7, 128))
        assert torch.allclose(mixed, attn(x), atol=1e-5)  # these probabilities are what its SDPA call applied


@pytest.fixture(scope="module")
def exphormer_run(tmp_path_factory):
    """The graph family's default run (exphormer on pattern), two training steps."""
    tmp = tmp_path_factory.mktemp("exphormer")
    return pipeline.train(compose_config("task=graph", *QUICK, "run_id=graph", f"data.cache_dir={tmp / 'cache'}",
                                         log_dir=tmp / "logs"))


def test_graph_default_exphormer_maps_are_its_sparse_softmax_over_graph_zero(exphormer_run, tmp_path, capsys):
    arrays = analysed(capsys, exphormer_run.best_ckpt, tmp_path)
    run = rebuild(exphormer_run.best_ckpt)
    _, batch = first_items(run.datamodule, N)
    nodes, total = int(batch.ptr[1]), batch.num_nodes
    tokens = torch.cat([torch.arange(nodes), torch.tensor([total])])  # graph 0's nodes, then its virtual node
    assert sorted(arrays) == [f"layer{i}" for i in range(4)]  # exphormer: 4 layers
    for probs in arrays.values():
        assert probs.shape == (1, 4, nodes + 1, nodes + 1)  # graph 0 only; 4 heads
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert (arrays["layer0"][0, :, :nodes, nodes] > 0).all()  # every node attends to its virtual node

    attn = run.module.backbone.layers[0].attn
    x, edge_index, edge_emb = attention_input(attn, run.module, batch)
    with torch.no_grad():
        q, k, e = (lin(inp).view(-1, 4, 16) for lin, inp in ((attn.q, x), (attn.k, x), (attn.e, edge_emb)))
    src, dst = edge_index  # key j -> query i
    score = (q[dst] * k[src] * e).sum(-1) / 4.0  # [edges, heads]
    pos = torch.full((len(x),), -1)
    pos[tokens] = torch.arange(len(tokens))
    mine = (pos[dst] >= 0) & (pos[src] >= 0)
    weight = torch.zeros(4, len(tokens), len(tokens))  # repeated edges (expander) add their weights
    weight.index_put_((torch.arange(4)[:, None], pos[dst][mine], pos[src][mine]), score[mine].exp().T,
                      accumulate=True)
    np.testing.assert_allclose(arrays["layer0"][0], (weight / weight.sum(-1, keepdim=True)).numpy(), atol=1e-5)


def test_graph_maps_keep_the_model_unchanged_and_cut_big_graphs_for_the_picture(exphormer_run):
    run = rebuild(exphormer_run.best_ckpt)
    _, batch = first_items(run.datamodule, N)
    found = find_attention(run.module)
    assert [type(m) for _, m in found.recorded] == [ExphormerAttention] * 4 and not found.skipped
    with torch.no_grad():
        before = run.module(batch)
        full = record_maps(run.module, batch, found)
        cut = record_maps(run.module, batch, found, limit=16)
        assert torch.equal(run.module(batch), before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for _, m in found.recorded)  # hooks gone
    nodes = int(batch.ptr[1])
    assert full.tokens == f"tokens 0-{nodes - 1}: graph 0's nodes, {nodes}: virtual nodes the model adds"
    assert cut.tokens.endswith(f"; the first 16 of its {nodes + 1} tokens shown")
    for (_, whole), (_, part) in zip(full.layers, cut.layers):
        assert torch.equal(part, whole[..., :16, :16])


def test_graph_tokengt_maps_are_the_platform_softmax_over_graph_zeros_node_and_edge_tokens(tmp_path, capsys):
    cfg = compose_config("task=graph", "model=tokengt", "model.hidden=16", "model.num_layers=2", "model.heads=2",
                         "model.node_id_dim=16", *SMALL_PATTERN, *QUICK, "run_id=tokengt",
                         f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path / "logs")
    result = pipeline.train(cfg)
    arrays = analysed(capsys, result.best_ckpt, tmp_path / "maps")
    run = rebuild(result.best_ckpt)
    _, batch = first_items(run.datamodule, N)
    nodes, edges = int(batch.ptr[1]), int((batch.edge_index[0] < batch.ptr[1]).sum())
    assert sorted(arrays) == ["layer0", "layer1"]
    for probs in arrays.values():
        assert probs.shape == (1, 2, nodes + edges, nodes + edges)  # graph 0's node tokens, then its edge tokens
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)

    attn = run.module.backbone.blocks[0].attn
    x, keep = attention_input(attn, run.module, batch)  # TokenGT sets the padding mask before each call
    with torch.no_grad():
        q, k, _ = attn.qkv(x).view(*x.shape[:2], 3, 2, 8).permute(2, 0, 3, 1, 4)
    assert keep[0].sum() == nodes + edges and keep[0, :nodes + edges].all()  # graph 0's tokens come first
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(~keep[:, None, None, :], float("-inf"))
    want = scores.softmax(-1)[0, :, :nodes + edges, :nodes + edges]
    np.testing.assert_allclose(arrays["layer0"][0], want.numpy(), atol=1e-6)


def test_a_graph_model_without_attention_is_a_clear_error_naming_the_ones_with_maps(tmp_path, capsys):
    cfg = compose_config("task=graph", "model=gcn", *SMALL_PATTERN, *QUICK, "run_id=gcn",
                         f"data.cache_dir={tmp_path / 'cache'}", log_dir=tmp_path / "logs")
    result = pipeline.train(cfg)
    code, out, err = cli(capsys, "analyse", result.best_ckpt, "--attention")
    assert code == 2 and not out
    assert "model=gcn has no attention to analyse" in err
    assert ("For task=graph, analyse a run of model=exphormer (the task=graph default), model=tokengt or model=gat"
            in err)
    assert not (result.run_dir / "attention_maps.png").exists()


@pytest.mark.parametrize("asked", ["no", "keyword", "positional"])
def test_edge_attention_is_recorded_and_the_caller_gets_what_it_asked_for(asked):
    torch.manual_seed(0)
    batch = Batch.from_data_list([tiny_graph(7, seed=1), tiny_graph(5, seed=2)])
    conv = GATConv(IN_DIM, 4, heads=2).eval()
    args = (batch.x, batch.edge_index)
    call = {"no": lambda: conv(*args), "keyword": lambda: conv(*args, return_attention_weights=True),
            "positional": lambda: conv(*args, None, None, True)}[asked]
    with torch.no_grad():
        out, (loops, alpha) = conv(*args, return_attention_weights=True)  # PyG's own coefficients
        found = find_attention(torch.nn.Sequential(conv))
        with recording(found) as calls:
            got = call()
    assert torch.equal(got if asked == "no" else got[0], out) and (asked == "no") == torch.is_tensor(got)
    (name, probs, keep, pairs), = calls
    assert name == "0" and keep is None and torch.equal(probs, alpha)
    assert torch.equal(pairs, loops.flip(0))  # (query = target, key = source): self-loops included
    assert not conv._forward_hooks and not conv._forward_pre_hooks
