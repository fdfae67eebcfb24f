"""Encoders against slow references written from the papers' equations, plus invariances."""

import math

import pytest
import torch
from torch import nn

from newsrec.nn import (
    AdditiveAttention,
    EntityEncoder,
    Fastformer,
    FastformerAttention,
    GatedGraphConvolution,
    GatedGraphEncoder,
    MultiHeadSelfAttention,
    MultiViewCombiner,
    TextEncoder,
    UserEncoder,
    id_embedding,
    masked_softmax,
    pretrained_embedding,
)


@pytest.fixture(autouse=True)
def float64_and_seed():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


def ref_mhsa(m: MultiHeadSelfAttention, x, mask):
    """Per example, per head, per position: the NRMS equations."""
    B, L, _ = x.shape
    out = torch.zeros(B, L, m.out_dim)
    for b in range(B):
        real = [j for j in range(L) if mask[b, j]]
        for h in range(m.num_heads):
            sl = slice(h * m.head_dim, (h + 1) * m.head_dim)
            for i in real:
                q = m.query.weight[sl] @ x[b, i] + m.query.bias[sl]
                logits = torch.stack(
                    [(q @ (m.key.weight[sl] @ x[b, j] + m.key.bias[sl])) / math.sqrt(m.head_dim) for j in real]
                )
                a = torch.softmax(logits, 0)
                out[b, i, sl] = sum(
                    a[t] * (m.value.weight[sl] @ x[b, j] + m.value.bias[sl]) for t, j in enumerate(real)
                )
    return out


def ref_additive(m: AdditiveAttention, x, mask):
    B, L, _ = x.shape
    out = torch.zeros(B, x.shape[-1])
    for b in range(B):
        real = [j for j in range(L) if mask[b, j]]
        if not real:
            continue
        s = torch.stack([m.query.weight[0] @ torch.tanh(m.proj.weight @ x[b, j] + m.proj.bias) for j in real])
        a = torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()
        out[b] = sum(a[t] * x[b, j] for t, j in enumerate(real))
    return out


def ref_fastformer(m: FastformerAttention, x, mask):
    """Fastformer as the official code defines it, token by token."""
    B, L, d = x.shape
    H, dh = m.num_heads, m.head_dim
    out = torch.zeros(B, L, d)
    for b in range(B):
        real = [j for j in range(L) if mask[b, j]]
        if not real:
            continue
        q = [m.query.weight @ x[b, j] + m.query.bias for j in real]
        k = [m.key.weight @ x[b, j] + m.key.bias for j in real] if m.key is not None else q
        gq = torch.zeros(d)
        gk = torch.zeros(d)
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            alpha = torch.softmax(torch.stack([(m.query_score.weight[h] @ qi) / math.sqrt(dh) for qi in q]), 0)
            gq[sl] = sum(alpha[t] * q[t][sl] for t in range(len(real)))
        p = [gq * ki for ki in k]
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            beta = torch.softmax(torch.stack([(m.key_score.weight[h] @ pi) / math.sqrt(dh) for pi in p]), 0)
            gk[sl] = sum(beta[t] * p[t][sl] for t in range(len(real)))
        for t, j in enumerate(real):
            v = q[t] if m.value is None else m.value.weight @ x[b, j] + m.value.bias
            out[b, j] = m.output.weight @ (gk * v) + m.output.bias + (q[t] if m.query_residual else 0)
    return out


def random_mask(B, L, full_row=True):
    lengths = torch.randint(1, L + 1, (B,))
    if full_row:
        lengths[0] = 0
    return torch.arange(L)[None, :] < lengths[:, None]


def test_mhsa_matches_reference():
    m = MultiHeadSelfAttention(6, num_heads=3, head_dim=4).double()
    x = torch.randn(4, 5, 6)
    mask = random_mask(4, 5)
    torch.testing.assert_close(m(x, mask), ref_mhsa(m, x, mask), atol=1e-10, rtol=1e-10)


def test_additive_matches_reference_and_weights():
    m = AdditiveAttention(6, 7).double()
    x = torch.randn(4, 5, 6) * 10  # large logits: max subtraction matters
    mask = random_mask(4, 5)
    out, w = m(x, mask, return_weights=True)
    torch.testing.assert_close(out, ref_additive(m, x, mask), atol=1e-10, rtol=1e-10)
    assert (w[~mask] == 0).all() and torch.allclose(w[1:].sum(-1), torch.ones(3))
    assert (out[0] == 0).all() and (w[0] == 0).all()


@pytest.mark.parametrize(
    "kwargs", [{}, {"value_from_query": False}, {"share_query_key": True}, {"query_residual": False}]
)
def test_fastformer_matches_reference(kwargs):
    m = FastformerAttention(6, num_heads=3, **kwargs).double()
    for p in m.parameters():  # larger weights than the 0.02 init, so that errors show
        nn.init.normal_(p, std=0.5)
    x = torch.randn(3, 7, 6)
    mask = random_mask(3, 7)
    torch.testing.assert_close(m(x, mask), ref_fastformer(m, x, mask), atol=1e-10, rtol=1e-10)


def test_fastformer_softmax_runs_over_tokens_not_heads():
    m = FastformerAttention(6, num_heads=3).double()
    for p in m.parameters():
        nn.init.normal_(p, std=0.5)
    x = torch.randn(1, 4, 6)
    # with one token the global query equals that token's query, whatever the scores
    one = torch.tensor([[True, False, False, False]])
    q = m.query(x[:, 0])
    p = q * m.key(x[:, 0])
    expect = m.output(p * q) + q  # global key = p of the single token
    torch.testing.assert_close(m(x, one)[:, 0], expect)


MODULES = {
    "mhsa": lambda: MultiHeadSelfAttention(6, 2, 3),
    "fastformer": lambda: Fastformer(6, 3, num_layers=2),
    "fastformer_block": lambda: Fastformer(6, 3, num_layers=2, layer_norm=True, feed_forward=True),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_padding_invariance_and_no_nan(name):
    m = MODULES[name]().double().eval()
    x = torch.randn(3, 5, 6, requires_grad=True)
    mask = random_mask(3, 5)
    out = m(x, mask)
    pad = torch.randn(3, 4, 6)
    x2 = torch.cat([x, pad], 1)
    mask2 = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], 1)
    out2 = m(x2, mask2)
    torch.testing.assert_close(out2[:, :5], out)
    assert (out2[:, 5:] == 0).all() and (out[~mask] == 0).all()
    assert (out[0] == 0).all()  # the fully masked row
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    g = torch.autograd.grad(m(x2, mask2).sum(), x2)[0]
    torch.testing.assert_close(g[:, :5] * mask[..., None], x.grad * mask[..., None])


@pytest.mark.parametrize("name", list(MODULES))
def test_self_attention_is_permutation_equivariant(name):
    m = MODULES[name]().double().eval()
    x = torch.randn(2, 6, 6)
    perm = torch.randperm(6)
    torch.testing.assert_close(m(x)[:, perm], m(x[:, perm]))


def test_pooling_is_permutation_invariant_and_padding_free():
    m = AdditiveAttention(6, 5).double()
    x = torch.randn(2, 6, 6)
    perm = torch.randperm(6)
    torch.testing.assert_close(m(x), m(x[:, perm]))
    mask = torch.ones(2, 6, dtype=torch.bool)
    torch.testing.assert_close(
        m(torch.cat([x, torch.randn(2, 3, 6)], 1), torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)), m(x)
    )


def test_masked_softmax_fully_masked_gradients():
    logits = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [False] * 4])
    w = masked_softmax(logits, mask)
    assert (w[1] == 0).all() and torch.isfinite(w).all()
    (w * torch.randn(2, 4)).sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[1] == 0).all()


def ref_ggnn_step(conv_lin_weight, gru: nn.GRUCell, h, edges, weights):
    """m_i = sum_j w_ji W h_j over edges j -> i; h_i <- GRU(m_i, h_i)."""
    Wh = h @ conv_lin_weight
    m = torch.zeros_like(h)
    for (j, i), w in zip(edges, weights):
        m[i] += w * Wh[j]
    return gru(m, h)


@pytest.mark.parametrize("weighted", [False, True])
def test_gated_graph_encoder_matches_hand_written_ggnn(weighted):
    enc = GatedGraphEncoder(3, 5, num_layers=2, use_edge_weight=weighted).double()
    x = torch.randn(4, 3)
    edges = [(0, 1), (1, 2), (2, 0), (3, 1), (1, 1)]
    w = torch.tensor([0.5, 2.0, 1.0, 3.0, 1.5])
    ei = torch.tensor(edges).t()
    h = torch.cat([x, torch.zeros(4, 2)], 1)  # zero-padded to the hidden size
    for layer in range(2):
        h = ref_ggnn_step(enc.conv.weight[layer], enc.conv.rnn, h, edges, w if weighted else torch.ones(5))
    torch.testing.assert_close(enc(x, ei, w), h)


def test_gated_graph_encoder_normalized_weights_are_a_weighted_mean_on_every_path():
    """``normalize_edge_weight`` equals the hand-written GGNN on weights divided by each target's
    incoming total, on the edge_index and pruned paths; a common scale of the weights
    changes nothing; it needs weighted messages."""
    enc = GatedGraphEncoder(3, 5, num_layers=2, normalize_edge_weight=True).double()
    x = torch.randn(4, 3)
    edges = [(0, 1), (1, 2), (2, 0), (3, 1), (1, 1)]
    w = torch.tensor([0.5, 2.0, 1.0, 3.0, 1.5])
    ei = torch.tensor(edges).t()
    into = torch.zeros(4).index_add_(0, ei[1], w)
    h = torch.cat([x, torch.zeros(4, 2)], 1)
    for layer in range(2):
        h = ref_ggnn_step(enc.conv.weight[layer], enc.conv.rnn, h, edges, w / into[ei[1]])
    torch.testing.assert_close(enc(x, ei, w), h)
    torch.testing.assert_close(enc(x, ei, 4 * w), h)
    out = torch.tensor([1, 2])
    torch.testing.assert_close(enc(x, ei, w, output_nodes=out)[out], h[out])
    with pytest.raises(ValueError, match="use_edge_weight"):
        GatedGraphEncoder(3, 5, use_edge_weight=False, normalize_edge_weight=True)


def test_gated_graph_encoder_wider_input_is_projected():
    enc = GatedGraphEncoder(8, 4, num_layers=1).double()
    out = enc(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]]))
    assert out.shape == (3, 4)
    with pytest.raises(ValueError, match="size 8"):
        enc(torch.randn(3, 5), torch.tensor([[0], [1]]))


def test_id_tables_start_small_with_an_untrained_zero_row_for_unknown_ids():
    table = id_embedding(50, 8)
    assert table.weight.shape == (50, 8) and (table.weight[0] == 0).all()
    assert table.weight.abs().max() <= 0.05 and table.weight[1:].abs().mean() > 0.01
    table(torch.tensor([0, 3, 0])).sum().backward()
    assert (table.weight.grad[0] == 0).all() and (table.weight.grad[3] != 0).all()
    assert id_embedding(0, 4).weight.shape == (1, 4)  # a data without users still builds


def test_news_and_user_encoders_shapes_padding_and_gradients():
    emb = pretrained_embedding(torch.randn(20, 6), freeze=False)
    assert (emb.weight[0] == 0).all()
    text = TextEncoder(emb, num_heads=2, head_dim=4, hidden_dim=5, dropout=0.0).double()
    tokens = torch.tensor([[3, 4, 5, 0, 0], [0, 0, 0, 0, 0], [7, 8, 9, 10, 11]])
    out = text(tokens)
    assert out.shape == (3, 8) and (out[1] == 0).all()
    torch.testing.assert_close(text(torch.cat([tokens, torch.zeros(3, 2, dtype=torch.long)], 1)), out)
    ent = EntityEncoder(
        pretrained_embedding(torch.randn(10, 4)), out_dim=8, num_heads=2, head_dim=2, hidden_dim=3, dropout=0.0
    ).double()
    e = ent(torch.tensor([[1, 2, 0], [0, 0, 0]]))
    assert e.shape == (2, 8) and torch.isfinite(e).all()
    user = UserEncoder(8, num_heads=2, head_dim=4, hidden_dim=5).double()
    news = torch.randn(2, 4, 8, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    u = user(news, mask)
    assert u.shape == (2, 8) and (u[1] == 0).all()
    combiner = MultiViewCombiner(8, 5).double()
    assert combiner(torch.randn(2, 3, 8)).shape == (2, 8)
    loss = text(tokens).sum() + u.sum() + e.sum()
    loss.backward()
    for mod in (text, user):
        for name, p in mod.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_every_parameter_gets_gradient():
    for name, make in MODULES.items():
        m = make().double()
        x = torch.randn(2, 5, 6)
        m(x, random_mask(2, 5, full_row=False)).pow(2).sum().backward()
        for pname, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (name, pname)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    m = Fastformer(6, 3).double()
    x = torch.randn(2, 5, 6)
    mask = random_mask(2, 5)
    torch.testing.assert_close(m.cuda()(x.cuda(), mask.cuda()).cpu(), m.cpu()(x, mask))


@pytest.mark.parametrize("sparse_aggregation", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("num_nodes,num_edges", [(30, 90), (80, 70)])
def test_gated_graph_encoder_pruned_outputs_equal_full(weighted, sparse_aggregation, num_nodes, num_edges, monkeypatch):
    """Updating only the nodes (and computing messages only from the senders) that the output
    nodes depend on gives their full-graph outputs and gradients, on a dense graph and on a
    sparse one where most nodes lie beyond the layers' reach."""
    monkeypatch.setattr(GatedGraphConvolution, "sparse_aggregation_on_cpu", sparse_aggregation)
    torch.manual_seed(1)
    enc = GatedGraphEncoder(4, 6, num_layers=3, use_edge_weight=weighted).double()
    n = num_nodes
    ei = torch.randint(0, n, (2, num_edges))
    w = torch.rand(num_edges) + 0.5
    x = torch.randn(n, 4, requires_grad=True)
    targets = torch.tensor([0, 3, 7])
    full = enc(x, ei, w)
    pruned = enc(x, ei, w, output_nodes=targets)
    torch.testing.assert_close(pruned[targets], full[targets])
    g_full = torch.autograd.grad(full[targets].sum(), x)[0]
    g_pruned = torch.autograd.grad(pruned[targets].sum(), x)[0]
    torch.testing.assert_close(g_pruned, g_full)
    if n == 80:  # the sparse graph: some nodes cannot reach the targets in 3 hops
        assert (g_full.abs().sum(-1) == 0).sum() > n // 4


def test_text_encoder_length_buckets_skip_padding_exactly():
    """Grouping texts by length and cutting each group to its longest text gives the outputs and
    gradients of encoding the whole padded batch (padding anywhere, all-padding texts, any
    leading dimensions); the result never depends on which other texts share the batch."""
    torch.manual_seed(0)
    n, L = 300, 12
    lengths = torch.randint(0, L + 1, (n,))
    tokens = torch.randint(1, 50, (n, L)) * (torch.arange(L) < lengths[:, None])
    tokens[::7, 1] = 0  # padding inside a text, too
    outs, grads = [], []
    vectors = torch.randn(50, 6, dtype=torch.float64)
    for buckets in (0, 1, 3, 8):
        emb = pretrained_embedding(vectors, freeze=False)
        torch.manual_seed(1)
        text = TextEncoder(emb, num_heads=2, head_dim=4, hidden_dim=5, dropout=0.0, length_buckets=buckets)
        text = text.double()
        full = text._encode(tokens, tokens != 0)  # every slot computed
        out = text(tokens.view(3, 100, L)).view(n, -1)
        torch.testing.assert_close(out, full)
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append(emb.weight.grad.clone())
        alone = text(tokens[:5])  # a small batch: one group, cut to its longest text
        torch.testing.assert_close(alone, out[:5].detach())
    assert (outs[0][lengths == 0] == 0).all()
    for out, grad in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(out, outs[0])
        torch.testing.assert_close(grad, grads[0])
    with pytest.raises(ValueError, match="length_buckets"):
        TextEncoder(emb, length_buckets=-1)


@pytest.mark.parametrize("weighted", [False, True])
def test_gated_graph_convolution_equals_pyg_gated_graph_conv(weighted):
    """newsrec's own GGNN (public MessagePassing API, one layer code path) gives PyG's
    GatedGraphConv outputs with the same parameters, on edge_index and,
    for the output nodes, in the pruned mode."""
    from torch_geometric.nn import GatedGraphConv

    torch.manual_seed(0)
    n = 40
    x, ei = torch.randn(n, 5).double(), torch.randint(0, n, (2, 120))
    w = (torch.rand(120) + 0.5).double() if weighted else None
    ref = GatedGraphConv(8, 3).double()
    mine = GatedGraphConvolution(8, 3).double()
    mine.load_state_dict(ref.state_dict())  # the same parameter names: old checkpoints load
    want = ref(x, ei, w)
    torch.testing.assert_close(mine(x, ei, w), want)
    out = torch.tensor([0, 4, 9])
    torch.testing.assert_close(mine(x, ei, w, output_nodes=out)[out], want[out])


@pytest.mark.parametrize("kind", ["gcn", "gat", "sage", "gin"])
def test_message_passing_encoders_keep_size_and_ignore_other_subgraphs(kind):
    """Every alternative graph encoder maps [N, d] to [N, d], and a node's output depends only
    on its own connected component (disjoint per-user subgraphs never mix)."""
    from newsrec.nn import build_graph_encoder

    torch.manual_seed(0)
    enc = build_graph_encoder(kind, 8, 3).eval()
    a = torch.tensor([[0, 1, 2], [1, 2, 0]])
    x = torch.randn(6, 8)
    both = enc(x, torch.cat([a, a + 3], dim=1))
    assert both.shape == (6, 8)
    alone = enc(x[:3], a)
    torch.testing.assert_close(both[:3], alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="graph_encoder must be one of"):
        build_graph_encoder("gnn", 8)
    if kind != "gcn":
        with pytest.raises(ValueError, match="takes no edge weights"):
            build_graph_encoder(kind, 8, use_edge_weight=True)


@pytest.mark.parametrize(
    "make_old, make_new",
    [
        (
            lambda: MultiHeadSelfAttention(dim_in=6, num_heads=2, head_dim=3),
            lambda: MultiHeadSelfAttention(in_dim=6, num_heads=2, head_dim=3),
        ),
        (lambda: AdditiveAttention(dim=6, hidden_dim=4), lambda: AdditiveAttention(in_dim=6, hidden_dim=4)),
        (lambda: GatedGraphEncoder(in_dim=4, hidden_dim=6), lambda: GatedGraphEncoder(in_dim=4, out_dim=6)),
        (
            lambda: UserEncoder(dim=6, num_heads=2, head_dim=3, attention_hidden=4),
            lambda: UserEncoder(in_dim=6, num_heads=2, head_dim=3, hidden_dim=4),
        ),
    ],
)
def test_old_keyword_names_still_build_the_same_layer_with_a_warning(make_old, make_new):
    """One naming scheme (in_dim / out_dim / hidden_dim); 0.1's names work for one release."""
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="is deprecated: use"):
        old = make_old()
    torch.manual_seed(0)
    new = make_new()
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    with pytest.raises(TypeError, match="pass in_dim= only"):
        MultiHeadSelfAttention(in_dim=6, dim_in=6)
