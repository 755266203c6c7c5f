"""SMITH (Yang et al., CIKM 2020) against the paper's definitions on small cases: greedy sentence filling,
the hierarchy's order dependence, the masked sentence block loss, the siamese score, the generated pairs,
and one short matching run."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from labformer import pipeline, registry
from labformer.data.contrastive.long_docs import MASK, PAD, SEP, LongDocPairsDataModule
from labformer.data.contrastive.views.text import TextViews
from labformer.data.files import MissingDataError
from labformer.models.contrastive.encoder import Encoder
from labformer.models.lm.smith import greedy_sentence_blocks
from labformer.objectives.smith import Smith, masked_block_loss, pair_loss

from conftest import compose_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smith(**kw):
    torch.manual_seed(0)
    sizes = dict(vocab_size=20, max_len=64, dim=16, num_heads=2, word_depth=1, doc_depth=2, block_len=4, max_blocks=8)
    return registry.create("lm", "smith", **{**sizes, **kw}).eval()


def document(*sentences: int, pad: int = 0, start: int = 3) -> list[int]:
    """Sentences of the given lengths (the last token of each is [SEP]; words cycle through 3..19), then `pad`
    padding."""
    ids, word = [], start
    for n in sentences:
        ids += [3 + (w - 3) % 17 for w in range(word, word + n - 1)] + [SEP]
        word += n - 1
    return ids + [PAD] * pad


# -- greedy sentence filling ---------------------------------------------------------------------
def test_greedy_filling_packs_whole_sentences_and_splits_only_a_sentence_longer_than_a_block():
    # sentences of 2, 1, 1, 3 tokens into blocks of 4: the first three fill one block, the 4th starts the next
    assert greedy_sentence_blocks(document(2, 1, 1, 3, pad=5), 4, SEP, PAD) == [(0, 4), (4, 7)]
    # 3 | 4 | 8 = 4 + 4 (split) | 2: a sentence that would overflow the open block starts a new one
    assert greedy_sentence_blocks(document(3, 4, 8, 2), 4, SEP, PAD) == [(0, 3), (3, 7), (7, 11), (11, 15), (15, 17)]
    # the short tail of a split sentence takes the next sentences in, as any other sentence
    assert greedy_sentence_blocks(document(6, 1, 1), 4, SEP, PAD) == [(0, 4), (4, 8)]


@pytest.mark.parametrize("seed", range(5))
def test_greedy_blocks_cover_the_document_never_exceed_the_length_and_are_greedy(seed):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, 15, size=40)
    ids = document(*lengths, pad=7)
    ends = set(np.cumsum(lengths).tolist())
    blocks = greedy_sentence_blocks(ids, 8, SEP, PAD)
    assert blocks[0][0] == 0 and blocks[-1][1] == sum(lengths)  # every token once, no padding
    assert all(b[1] == c[0] for b, c in zip(blocks, blocks[1:]))
    assert all(0 < e - s <= 8 for s, e in blocks)
    for (s, e), (_, e2) in zip(blocks, blocks[1:]):
        if e in ends:  # closed at a sentence end: the next whole sentence (or its first piece) did not fit
            nxt = min(x for x in ends if x > e)
            assert (e - s) + min(nxt - e, 8) > 8
        else:  # closed inside a sentence: only where a sentence longer than the block was cut
            start = max([0, *(x for x in ends if x < e)])
            assert min(x for x in ends if x > e) - start > 8 and (e - start) % 8 == 0


# -- the hierarchy -------------------------------------------------------------------------------
def test_the_document_vector_sees_the_block_order_only_through_the_block_positions():
    model = smith()
    sentences = [[3, 4, 5, SEP], [6, 7, 8, SEP], [9, 10, 11, SEP], [12, 13, 14, SEP], [15, 16, 17, SEP]]
    order = [3, 0, 4, 1, 2]
    docs = torch.tensor([sum(sentences, []), sum((sentences[i] for i in order), [])])
    assert model.split(docs) == [[(4 * i, 4 * i + 4) for i in range(5)]] * 2  # one block per sentence
    with torch.no_grad():
        with_positions = model.pooled(docs)
        model.document.position.weight.zero_()
        without = model.pooled(docs)
    assert not torch.allclose(with_positions[0], with_positions[1], atol=1e-4)
    assert torch.allclose(without[0], without[1], atol=1e-5)


def test_a_document_vector_does_not_depend_on_the_rest_of_the_batch():
    model = smith()
    short = document(3, 2, 4, pad=64 - 9)
    long = document(4, 4, 3, 1, 4, 2, 4, 4, pad=64 - 26, start=5)
    with torch.no_grad():
        alone = model.pooled(torch.tensor([short]))
        batch = model.pooled(torch.tensor([long, short, long]))
        states = model(torch.tensor([short, long]))
    assert torch.allclose(alone[0], batch[1], atol=1e-5)
    assert states.shape == (2, 64, 16) and states[0, 9:].eq(0).all() and states[0, :9].abs().sum(1).gt(0).all()


# -- the objectives ------------------------------------------------------------------------------
def test_masked_block_loss_is_the_softmax_over_the_batch_candidates_by_hand():
    predicted, candidates = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    # p_1 . c = (1, 2), p_2 . c = (2, 0): the right candidate of p_i is c_i
    by_hand = (-math.log(math.e / (math.e + math.e ** 2)) - math.log(1 / (math.e ** 2 + 1))) / 2
    loss, acc = masked_block_loss(predicted, candidates)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6) and acc.item() == 0.0


def test_the_objective_masks_blocks_at_the_document_level_and_scores_them_among_the_batch():
    model = smith()
    objective = Smith(16, match_weight=0.0, block_weight=1.0, masked_blocks=8).eval()
    objective.attach(Encoder(model, "lm"))
    docs = torch.tensor([document(4, 4, 4, pad=52), document(4, 4, pad=56, start=9)])
    with torch.no_grad():
        _, terms = objective.pretraining(model, docs)
        # every block is masked (masked_blocks >= blocks), so the order the objective draws them in cancels out
        _, vectors = model.encode_blocks(docs, model.split(docs), token_states=False)
        masked = [objective.block_mask.expand(len(v), -1) for v in vectors]
        _, states = model.document(masked)
        p = objective.block_transform(torch.cat(states))
        c = torch.cat(vectors)
        logits = (p @ c.T).tolist()
    by_hand = -sum(math.log(math.exp(row[i]) / sum(math.exp(x) for x in row)) for i, row in enumerate(logits)) / 5
    assert len(c) == 5 and terms["block"][0].item() == pytest.approx(by_hand, rel=1e-5)


def test_the_siamese_score_is_symmetric_and_the_pair_loss_is_class_balanced():
    model = smith()
    objective = Smith(16)
    encoder = Encoder(model, "lm")
    a, b = torch.tensor([document(4, 3, 2, pad=55)]), torch.tensor([document(2, 4, 4, 4, pad=50, start=8)])
    with torch.no_grad():
        ab, ba = objective.score(encoder(a), encoder(b)), objective.score(encoder(b), encoder(a))
        both = encoder(torch.cat([a, b, a]))
    assert ab.item() == pytest.approx(ba.item(), abs=1e-6)
    assert objective.score(both, both)[0, 1].item() == pytest.approx(ab.item(), abs=1e-5)
    assert abs(ab.item()) <= 6.0 + 1e-6  # a * cos with the paper's amplifier 6
    # 3 items, labels (0, 0, 1): one positive pair (0, 1), two negatives (0, 2), (1, 2); cosines 0.6, 0.8, 0
    feats = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.8, -0.6]])
    loss, acc = pair_loss(feats, torch.tensor([0, 0, 1]), torch.arange(3), amplifier=6.0)
    bce = lambda s, y: math.log(1 + math.exp(-s)) if y else math.log(1 + math.exp(s))  # noqa: E731
    by_hand = (bce(3.6, 1) + (bce(4.8, 0) + bce(0.0, 0)) / 2) / 2  # positives and negatives weigh the same
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert acc.item() == pytest.approx((1 + 0.5) / 2)  # the negative at cos 0.8 is called a match
    # the two views of one document are never a pair
    assert pair_loss(feats[:2], torch.tensor([0, 0]), torch.tensor([4, 4]), 6.0)[0].item() == 0.0


def test_pretraining_needs_the_hierarchical_encoder():
    from labformer.errors import UserError

    gpt = registry.create("lm", "gpt", vocab_size=20, max_len=16, causal=False, depth=1, dim=16)
    with pytest.raises(UserError, match="model=smith"):
        Smith(16, match_weight=0.0, word_weight=1.0).attach(Encoder(gpt, "lm"))


# -- the data --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pairs_data():
    data = LongDocPairsDataModule(context=512)
    data.setup()
    return data


def test_long_doc_pairs_are_seeded_split_by_topic_and_sized(pairs_data):
    again = LongDocPairsDataModule(context=512)
    again.setup()
    assert all(torch.equal(a, b) for s in ("train", "test") for a, b in
               zip(pairs_data.sets[s].tensors, again.sets[s].tensors))
    groups = pairs_data.groups_of
    assert not set(groups["train"]) & set(groups["test"]) and not set(groups["val"]) & set(groups["test"])
    labels = {s: set(d.tensors[1].tolist()) for s, d in pairs_data.sets.items()}
    assert not labels["train"] & labels["test"] and len(labels["test"]) >= 5
    tokens = torch.cat([d.tensors[0] for d in pairs_data.sets.values()])
    lengths = (tokens != PAD).sum(1)
    assert lengths.min() >= 100 and lengths.max() == 512  # min_doc_tokens / 2 .. context
    assert tokens.eq(SEP).any(1).float().mean() > 0.9  # sentences end with [SEP] (a cut code block may not)
    first_pad = (tokens == PAD).int().argmax(1)
    assert torch.where(lengths < 512, first_pad == lengths, True).all()  # padded at the end only
    left, right, target = pairs_data.pairs("test")
    test_labels = pairs_data.sets["test"].tensors[1].numpy()
    assert ((test_labels[left] == test_labels[right]) == target.astype(bool)).all() and target.mean() == 0.5
    assert len(set(zip(left.tolist(), right.tolist()))) == len(left)


def test_a_missing_corpus_names_its_file(tmp_path):
    data = LongDocPairsDataModule(data_dir=tmp_path, corpus="tinyshakespeare", download=False)
    with pytest.raises(MissingDataError, match="input.txt"):
        data.setup()


def test_the_text_views_of_padded_documents_stay_inside_each_document():
    docs = torch.zeros(50, 40, dtype=torch.long)
    for r in range(50):
        docs[r, : 10 + r % 30] = torch.arange(3, 13 + r % 30)
    lengths = (docs != PAD).sum(1)
    masked = TextViews(vocab_size=50, mask=0.2, mask_token=MASK, crop=1.0, padded=True)(docs)
    assert torch.equal((masked != docs).sum(1), (0.2 * lengths.float()).round().long())
    assert masked[docs == PAD].eq(PAD).all()
    cropped = TextViews(vocab_size=50, mask=0.0, crop=0.5, padded=True)(docs, torch.Generator().manual_seed(0))
    kept = (cropped != PAD).sum(1)
    assert (kept >= (0.5 * lengths).floor()).all() and (kept <= lengths).all()
    assert all(torch.equal(c[:k], d[c[0] - 3: c[0] - 3 + k]) for c, d, k in zip(cropped, docs, kept))


# -- a short run ---------------------------------------------------------------------------------
def test_a_short_matching_run_lowers_the_pair_loss_and_reports_matching_metrics(tmp_path):
    cfg = compose_config("task=contrastive", "model=smith", "data=long_doc_pairs", "objective=smith",
                         "data.context=384", "model.dim=32", "model.word_depth=1", "model.doc_depth=1",
                         "task.pk_sampler.classes=8", "task.pk_sampler.per_class=2", "trainer.max_epochs=5",
                         "logger=csv", "task.episodes.episodes=50", "callbacks.progress_bar=none",
                         "trainer.deterministic=true", log_dir=tmp_path)
    result = pipeline.train(cfg)
    rows = list(csv.DictReader(next(result.run_dir.rglob("metrics.csv")).read_text().splitlines()))
    losses = [float(r["train/pair_loss"]) for r in rows if r.get("train/pair_loss")]
    assert len(losses) == 5 and losses[-1] < losses[0] - 0.1, losses
    metrics = result.test_metrics
    assert 0.5 < metrics["test/match_auroc"] <= 1.0 and 0.0 <= metrics["test/match_acc"] <= 1.0
    assert "test/oneshot_20way_acc" in metrics and "test/knn_acc" not in metrics  # test sections are unseen
