"""KRED, FastformerNR, FUM and MINER compute what their official code (or reference
implementation) computes (#45): each checked against a direct, loop-level reference on tiny
inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _mechanisms import CATEGORIES, TINY, WORDS, batch_for, news_table

from newsrec.models import FUM, KRED, MINER, FastformerNR
from newsrec.nn import FastformerLayer
from newsrec.nn.fastformer import Fastformer


def test_fastformer_official_block_is_attention_dense_layernorm_and_feed_forward():
    torch.manual_seed(0)
    layer = FastformerLayer(6, 3, 0.0, layer_norm=True, feed_forward=True, output_dense=True, hidden_dim=5).double()
    x, mask = torch.randn(2, 4, 6, dtype=torch.double), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]).bool()
    a = layer.norm1(x + layer.dense(layer.attention(x, mask)))
    w1, _, w2 = layer.ffn
    want = layer.norm2(a + w2(F.gelu(w1(a)))) * mask[..., None]
    torch.testing.assert_close(layer(x, mask), want)
    assert layer.attention.query_score.bias is None  # FUM's Keras layer: no score bias unless asked


def test_fastformer_position_table_adds_by_position_and_refuses_longer_inputs():
    torch.manual_seed(0)
    stack = Fastformer(6, 3, num_layers=1, max_positions=4, input_norm=True).double().eval()
    x, mask = torch.randn(1, 3, 6, dtype=torch.double), torch.ones(1, 3, dtype=torch.bool)
    want = stack.layers[0](stack.input_norm(x + stack.positions.weight[:3]), mask)
    torch.testing.assert_close(stack(x, mask), want)
    assert stack.positions.weight.std().item() == pytest.approx(0.02, rel=0.5)
    with pytest.raises(ValueError, match="position table has 4"):
        stack(torch.randn(1, 5, 6, dtype=torch.double))


def test_fastformer_nr_official_and_bare_blocks():
    official = FastformerNR(num_words=WORDS, **TINY)
    assert len(official.news_fastformer.layers) == 2 and official.news_fastformer.positions is not None
    assert official.news_fastformer.layers[0].ffn is not None and official.news_fastformer.layers[0].dense is not None
    bare = FastformerNR(num_words=WORDS, block="bare", **TINY)
    assert bare.news_fastformer.positions is None and bare.news_fastformer.layers[0].ffn is None
    with pytest.raises(ValueError, match="block must be one of"):
        FastformerNR(num_words=WORDS, block="full", **TINY)


def _kred(**kw) -> KRED:
    torch.manual_seed(0)
    return KRED(num_words=WORDS, num_entity_ids=30, entity_dim=8, num_entity_neighbors=3, **TINY, **kw).eval()


def _kred_news() -> dict[str, torch.Tensor]:
    news = news_table()
    n = len(news["title"])
    g = torch.Generator().manual_seed(1)
    news["entity_neighbors"] = torch.randint(0, 30, (n, 2, 3), generator=g) * (news["entities"] > 0)[..., None]
    news |= {f: (news["entities"] > 0).long() for f in ("entity_positions", "entity_counts", "entity_types")}
    return news


def test_kred_scores_with_the_official_mlp_and_its_own_user_side_encoder():
    model = _kred()
    assert not model.user_is_vector and model.cacheable
    news = _kred_news()
    history, cands = torch.tensor([[5, 6, 7, 0], [9, 10, 11, 12]]), torch.tensor([[20, 21, 22], [23, 24, 25]])
    with torch.no_grad():
        got = model(batch_for(news, history, history != 0, cands))
        cand_vec = model._encode(model.candidate_encoder, news)
        hist_vec = model._encode(model.user_news_encoder, news)
        for b in range(2):
            h = hist_vec[history[b][history[b] != 0]]
            a = torch.softmax(model.user_attention(h)[:, 0], 0)  # over this user's clicks only
            u = (a[:, None] * h).sum(0)
            for c_i, c in enumerate(cands[b].tolist()):
                mlp = model.predictor(torch.cat([u, cand_vec[c]]))
                assert got[b, c_i] == pytest.approx(10 * torch.sigmoid(mlp).item(), abs=1e-5)
    assert not torch.allclose(cand_vec, hist_vec)  # two encoders (the official User_modeling's own)
    assert not model.entity_embedding.weight.requires_grad  # fixed TransE, as the official code
    dot = _kred(predictor="dot", user_news_encoder=False)
    assert dot.user_is_vector and dot.user_news_encoder is None
    with pytest.raises(ValueError, match="predictor must be one of"):
        _kred(predictor="cosine")


def test_kred_context_tables_start_small_as_the_official_xavier():
    model = _kred()
    for table in model.candidate_encoder.context.values():
        assert table.weight[1:].norm(dim=-1).mean() < 0.05
    assert model.candidate_encoder.context["entity_positions"].num_embeddings == 1000


def test_fum_pools_each_click_as_the_official_code():
    torch.manual_seed(0)
    sizes = dict(TINY, num_words=WORDS, num_categories=CATEGORIES + 1, num_subcategories=CATEGORIES + 1)
    model = FUM(use_coarse=False, category_dim=4, entity_heads=2, entity_head_dim=4, fine_dim=6, **sizes).eval()
    news = news_table()
    history = torch.tensor([[5, 6, 0], [7, 8, 9]])
    hmask = history != 0
    with torch.no_grad():
        got = model.fine_user(news, history, hmask)
        x, mask = model.fine_tokens(news, history)
        mask = mask & hmask[..., None]
        B, H, T, _ = x.shape
        h = model.fine_encoder(model.fine_input(x).reshape(B, H * T, -1), mask.reshape(B, H * T)).reshape(B, H, T, -1)
        for b in range(B):
            clicks = []
            for i in range(H):
                if not hmask[b, i]:
                    continue
                title = h[b, i, :5][mask[b, i, :5]]
                pool = model.fine_news_pooling
                a = torch.softmax(pool.query(torch.tanh(pool.proj(title)))[:, 0], 0)
                parts = torch.cat([(a[:, None] * title).sum(0), h[b, i, 5], h[b, i, 6]])
                clicks.append(model.fine_news_dense(parts))
            clicks = torch.stack(clicks)
            pool = model.fine_user_pooling
            a = torch.softmax(pool.query(torch.tanh(pool.proj(clicks)))[:, 0], 0)
            torch.testing.assert_close(got[b], model.fine_proj((a[:, None] * clicks).sum(0)), atol=1e-5, rtol=1e-5)
    for table in (model.fine_category_embedding, model.news_encoder.category[0]):
        assert table.weight.abs().max() <= 0.05
    paper = FUM(use_coarse=False, fine_news_pooling="tokens", fine_dim=6, category_dim=4, entity_heads=2,
                entity_head_dim=4, **sizes)  # fmt: skip
    assert paper.fine_news_dense is None and paper.fine_proj.in_features == 6
    with pytest.raises(ValueError, match="fine_news_pooling"):
        FUM(fine_news_pooling="title", **sizes)


@pytest.mark.parametrize("category_aware", [False, True])
def test_miner_weighted_aggregation_is_target_aware_per_candidate(category_aware):
    torch.manual_seed(0)
    model = MINER(
        num_words=WORDS, num_categories=CATEGORIES + 1, num_codes=3, code_dim=8, category_aware=category_aware,
        category_dim=4, **TINY,
    ).eval()  # fmt: skip
    news = news_table()
    history, cands = torch.tensor([[5, 6, 7, 0], [9, 10, 11, 12]]), torch.randint(13, 200, (2, 20))
    with torch.no_grad():
        got = model(batch_for(news, history, history != 0, cands))
        vec = model.encode_news(news)
        cat = F.normalize(model.category_embedding(news["category"]), dim=-1) if category_aware else None
        for b in range(2):
            clicks = history[b][history[b] != 0]
            h = vec[clicks]
            for c_i, c in enumerate(cands[b].tolist()):
                logits = torch.tanh(model.poly_attention.proj(h)) @ model.poly_attention.codes.T  # [H, K]
                if category_aware:
                    logits = logits + (cat[clicks] @ cat[c])[:, None]
                v = torch.softmax(logits, 0).T @ h  # [K, d]
                w = torch.softmax(F.gelu(model.target_attention.proj(v)) @ vec[c], 0)
                assert got[b, c_i] == pytest.approx((w * (v @ vec[c])).sum().item(), abs=1e-5)
