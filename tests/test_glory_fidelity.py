"""GLORY's encoders in the official code's form (tinyrolls/GLORY): references written from its
layers, the biases that change no result, the warm-up-then-constant schedule, and old-form
checkpoints refused in one line."""

import pytest
import torch
from torch import nn

from newsrec.checkpoint_io import check_weights_fit, model_from_checkpoint
from newsrec.nn import AdditiveAttention, EntityEncoder, MultiHeadSelfAttention, MultiViewCombiner, TextEncoder
from newsrec.training import WarmupLinearDecay, configure_adam


@pytest.fixture(autouse=True)
def float64_and_seed():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def _reference_block(x, mask, mhsa, norm1, pool, norm2):
    """The official block, written out: LN(Att(LN(MHSA(x)))) with masked softmaxes."""
    B, L, _ = x.shape
    H, d = mhsa.num_heads, mhsa.head_dim

    def heads(t):
        return t.view(B, L, H, d).transpose(1, 2)

    q, k, v = heads(mhsa.query(x)), heads(mhsa.key(x)), heads(mhsa.value(x))
    logits = q @ k.transpose(-1, -2) / d**0.5
    logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
    h = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, L, H * d) * mask[..., None]
    h = norm1(h)
    a = pool.query(torch.tanh(pool.proj(h))).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)
    return norm2((a[..., None] * h).sum(1))


def test_text_encoder_official_form_matches_reference_and_ignores_padding():
    emb = nn.Embedding(30, 12, padding_idx=0)
    enc = TextEncoder(emb, 3, 4, 8, dropout=0.0, length_buckets=0, layer_norm=True, key_bias=False, score_bias=True)
    for norm in (enc.attention_norm, enc.pooled_norm):  # non-trivial affine parameters
        nn.init.normal_(norm.weight)
        nn.init.normal_(norm.bias)
    tokens = torch.tensor([[3, 5, 7, 0, 0], [2, 9, 11, 4, 1]])
    mask = tokens != 0
    ref = _reference_block(emb(tokens), mask, enc.attention, enc.attention_norm, enc.pooling, enc.pooled_norm)
    torch.testing.assert_close(enc(tokens), ref)
    padded = torch.cat([tokens, torch.zeros(2, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(enc(padded), enc(tokens))
    assert enc.attention.key.bias is None and enc.pooling.query.bias is not None


def test_key_and_score_biases_change_no_result():
    x, mask = torch.randn(3, 5, 6), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]).bool()
    with_bias, without = MultiHeadSelfAttention(6, 2, 3), MultiHeadSelfAttention(6, 2, 3, key_bias=False)
    without.load_state_dict({k: v for k, v in with_bias.state_dict().items() if k != "key.bias"})
    nn.init.normal_(with_bias.key.bias)
    torch.testing.assert_close(with_bias(x, mask), without(x, mask))
    scored, plain = AdditiveAttention(6, 4, score_bias=True), AdditiveAttention(6, 4)
    plain.load_state_dict({k: v for k, v in scored.state_dict().items() if k != "query.bias"})
    nn.init.constant_(scored.query.bias, 3.0)
    torch.testing.assert_close(scored(x, mask), plain(x, mask))


def test_entity_encoders_official_forms():
    emb = nn.Embedding(40, 10, padding_idx=0)
    local = EntityEncoder(emb, 16, 2, 5, 8, dropout=0.0, layer_norm=True, key_bias=False, score_bias=True)
    glob = EntityEncoder(emb, 16, 4, 4, 8, dropout=0.0, layer_norm=True, project=False, score_bias=True)
    ents = torch.tensor([[4, 9, 0], [0, 0, 0], [7, 0, 0]])
    mask = ents != 0
    ref = _reference_block(emb(ents), mask, glob.attention, glob.attention_norm, glob.pooling, glob.pooled_norm)
    ref[1] = glob.pooled_norm(torch.zeros(16))  # no entity: the pooled zero vector through the norm
    torch.testing.assert_close(glob(ents), ref)
    out = local(ents)
    assert out.shape == (3, 16) and glob(ents).shape == (3, 16)
    padded = torch.cat([ents, torch.zeros(3, 5, dtype=torch.long)], 1)
    torch.testing.assert_close(local(padded), out)
    # a news without entities gives a constant, whatever else is in the batch
    torch.testing.assert_close(local(ents[1:2]), out[1:2])
    with pytest.raises(ValueError, match="must equal out_dim"):
        EntityEncoder(emb, 16, 2, 5, project=False)


def test_candidate_aggregator_projects_with_leaky_relu():
    comb = MultiViewCombiner(6, 4, project=True, score_bias=True)
    views = torch.randn(2, 3, 6)
    pooled = comb.pooling(views)
    torch.testing.assert_close(comb(views), nn.functional.leaky_relu(comb.proj(pooled), 0.2))


def test_warmup_then_constant_schedule():
    plan = WarmupLinearDecay(total_steps=10, warmup_steps=4, decay=False)
    assert [plan(t) for t in range(6)] + [plan(100)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    old = WarmupLinearDecay(10, 2)
    del old.decay  # a plan saved before ``decay`` existed keeps decaying
    assert old(6) == 0.5
    opt = configure_adam([{"params": [nn.Parameter(torch.zeros(1))]}], lr=1.0, schedule="warmup_constant",
                         warmup_fraction=0.1, planned_steps=100)  # fmt: skip
    assert opt["lr_scheduler"]["scheduler"].lr_lambdas[0].decay is False


def test_old_form_glory_checkpoint_does_not_fit(tmp_path):
    from newsrec.models import GLORY

    model = GLORY(num_words=20, num_entity_ids=10, word_dim=8, entity_dim=8, num_heads=2, head_dim=4,
                  entity_heads=2, entity_head_dim=4, attention_hidden=4)  # fmt: skip
    old = {k: v for k, v in model.state_dict().items() if "attention_norm" not in k}
    with pytest.raises(ValueError, match=r"does not fit GLORY .*title_encoder\.attention_norm\.weight"):
        check_weights_fit(old, model, "old.ckpt")
    check_weights_fit(model.state_dict(), model, "new.ckpt")
    ckpt = {"state_dict": old, "hyper_parameters": dict(model.hparams), "newsrec_model": "newsrec.models.GLORY"}
    with pytest.raises(ValueError, match="does not fit GLORY"):
        model_from_checkpoint(ckpt, "old.ckpt")
