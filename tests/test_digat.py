"""DIGAT as the official code (Veason-silverbullet/DIGAT) computes it: the user graph with its
topic nodes, the dual-graph interaction against a per-pair reference written from the official
equations, and the one-line error for a checkpoint of the former form."""

import math

import numpy as np
import pytest
import torch
from _models import make
from torch.nn import functional as F

from newsrec.checkpoint_io import check_weights_fit
from newsrec.core import as_batch
from newsrec.data import MINDDataModule
from newsrec.models.digat import user_graph


@pytest.fixture(scope="module")
def dm(tiny_world):
    return MINDDataModule(str(tiny_world), batch_size=8, eval_batch_size=16, history_length=20)


def test_user_graph_links_clicks_topics_and_present_topics():
    # clicks of categories 2, 1, 2 and a padded click; 3 topic nodes (categories 1..3)
    adj, topic_of = user_graph(torch.tensor([[2, 1, 2, 3]]), torch.tensor([[True, True, True, False]]), 3)
    expected = torch.eye(7, dtype=torch.bool)
    for i, j in [(0, 2), (0, 5), (2, 5), (1, 4), (4, 5)]:  # same category; click-topic; topic-topic
        expected[i, j] = expected[j, i] = True
    assert torch.equal(adj[0], expected)  # the padded click and the absent topic 3: self-loops only
    assert topic_of[0].nonzero().tolist() == [[0, 2], [1, 1], [2, 2]]


def _attend(K, Q, features, query, mask):  # the official ScaledDotProductAttention, -1e9 fill
    a = K(features) @ Q(query) / math.sqrt(K.out_features)
    return F.softmax(a.masked_fill(~mask, -1e9), 0) @ features


def _news_context(m, x, mask):
    local, glob = x[0], _attend(m.attention.K, m.attention.Q, x, x[0], mask)
    gate = torch.sigmoid(m.gate(torch.cat([local, glob])))
    return gate * local + (1 - gate) * glob


def _user_context(m, clicks, cats, valid, c_news):
    a = m.K(clicks) @ m.Q(c_news) / math.sqrt(clicks.shape[-1])
    topics = []
    for k in sorted({c for c, v in zip(cats, valid) if v}):  # scatter_softmax within each category
        rows = [i for i, (c, v) in enumerate(zip(cats, valid)) if v and c == k]
        topics.append(F.softmax(a[rows], 0) @ clicks[rows])
    t = torch.stack(topics)
    t = F.relu(m.affine(t)) + t
    return _attend(m.attention.K, m.attention.Q, t, c_news, torch.ones(len(t), dtype=torch.bool))


def _gat(m, x, graph, context):
    e = F.leaky_relu(m.a(F.relu(m.ffn3(context) + m.ffn1(x)[None] + m.ffn2(x)[:, None])).squeeze(-1), 0.2)
    return F.relu(F.softmax(e.masked_fill(~graph, -1e9), 1) @ m.W(x)) + x


def _reference(model, batch):
    """Per pair, the official forward on graphs built by the official loops."""
    vec = model.encode_news(batch["news"])
    graph, edges = batch["news"]["semantic_graph"].tolist(), batch["news"]["semantic_graph_edges"].tolist()
    cat = batch["news"]["category"].tolist()
    T, ctx = model.num_topics, model.contexts
    scores = torch.zeros(batch["candidates"].shape)
    for b, u in enumerate(batch["user_index"].tolist()):
        hist, valid = batch["history"][u].tolist(), batch["history_mask"][u].tolist()
        H = len(hist)
        cats = [cat[n] for n in hist]
        G = torch.eye(H + T, dtype=torch.bool)
        for i in range(H):
            if not valid[i]:
                continue
            if cats[i] >= 1:
                G[i, H + cats[i] - 1] = G[H + cats[i] - 1, i] = True
            for j in range(i + 1, H):
                if valid[j] and cats[j] == cats[i]:
                    G[i, j] = G[j, i] = True
                elif valid[j] and cats[i] >= 1 and cats[j] >= 1:
                    G[H + cats[i] - 1, H + cats[j] - 1] = G[H + cats[j] - 1, H + cats[i] - 1] = True
        for c, n in enumerate(batch["candidates"][b].tolist()):
            if not batch["candidate_mask"][b, c]:
                continue
            nodes = [n] + graph[n][1:]
            real = [True] + [m > 0 for m in graph[n][1:]]
            NG = torch.eye(len(nodes), dtype=torch.bool)
            for slot, e in enumerate(edges[n]):
                parent, node = divmod(e, len(nodes))
                if slot and e >= 0 and real[parent] and real[node]:
                    NG[parent, node] = NG[node, parent] = True
            read = torch.tensor([not any(real[1:])] + real[1:])
            x = vec[nodes] * torch.tensor(real, dtype=vec.dtype)[:, None]
            y = torch.cat([vec[hist], model.topic_nodes.weight])
            c_n = _news_context(ctx.news, x, read)
            c_u = _user_context(ctx.user, y[:H], cats, valid, c_n)
            for layer in model.layers:
                x, y = _gat(layer.news, x, NG, c_u), _gat(layer.user, y, G, c_n)
                c_n = c_n + _news_context(ctx.news, x, read)
                c_u = c_u + _user_context(ctx.user, y[:H], cats, valid, c_n)
            scores[b, c] = c_n @ c_u
    return scores


def test_scores_equal_the_official_computation_pair_by_pair(dm):
    torch.manual_seed(0)
    model = make("digat", dm, num_layers=2).eval()
    torch.nn.init.normal_(model.topic_nodes.weight, std=0.5)  # zeros at the start: make them count
    dm.configure(model.data_requirements())
    ds = dm.val_dataloader().dataset
    batch = as_batch(ds[np.arange(6)])
    assert (batch["news"]["semantic_graph"][batch["candidates"][batch["candidate_mask"]], 6:] > 0).any()  # 2 hops
    assert len(set(batch["news"]["category"].tolist())) > 2
    with torch.no_grad():
        got, want = model(batch), _reference(model, batch)
    mask = batch["candidate_mask"]
    torch.testing.assert_close(got[mask], want[mask], atol=1e-4, rtol=1e-4)


def test_topic_nodes_start_at_zero_and_change_the_scores(dm):
    torch.manual_seed(0)
    model = make("digat", dm).eval()
    assert model.topic_nodes.weight.abs().max() == 0
    dm.configure(model.data_requirements())
    batch = dm.val_dataloader().dataset[np.arange(4)]
    with torch.no_grad():
        before = model(batch)
        model.topic_nodes.weight.normal_()
        after = model(batch)
    assert not torch.allclose(before, after)


def test_a_checkpoint_of_the_former_form_does_not_fit(dm):
    model = make("digat", dm)
    former = {k: v for k, v in model.state_dict().items() if not k.startswith(("layers", "contexts", "topic"))}
    former["layers.0.gat_news.lin.weight"] = torch.zeros(16, 16)  # the former DenseGATConv layers
    former["readout.attention.weight"] = torch.zeros(8, 16)  # and its additive readout
    with pytest.raises(ValueError, match=r"does not fit DIGAT .*it has no layers\.0\.news\.W\.weight"):
        check_weights_fit(former, model, "old.ckpt")
