"""Model invariants: batch independence, permutation, padding, cached evaluation, checkpoints."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from _models import SMALL, TINY_FUM, make

from newsrec.data import MINDDataModule
from newsrec.models import FUM, GLORY, NRMS

MODELS = ["nrms", "glory", "glory_sampled", "glory_transitions", "glory_gat", "fum", "fum_concat", "fum_mhsa"]
MODELS += ["gru", "naml", "fastformer_nr", "npa", "npa_cacheable", "lstur", "lstur_con", "hierec", "miner"]
MODELS += ["miner_category", "libfm", "deepfm", "fim", "dkn", "kred"]
MODELS += ["user_as_graph", "gerl", "gnewsrec", "digat"]  # the graph models (part 2)
PLM_VARIANTS = ["nrms_plm", "glory_plm", "fum_plm", "miner_plm", "kred_plm"]
GRAPH_VARIANTS = ["glory_gcn", "glory_gat", "glory_sage", "glory_gin"]


@pytest.fixture(scope="module")
def dm(tiny_world):
    return MINDDataModule(str(tiny_world), batch_size=8, eval_batch_size=16, history_length=20)


def eval_batch(dm, model, rows):
    dm.configure(model.data_requirements())
    ds = dm.val_dataloader().dataset
    return ds[np.asarray(rows)]


@pytest.mark.parametrize("name", MODELS + [v for v in GRAPH_VARIANTS if v not in MODELS] + PLM_VARIANTS)
def test_scores_never_depend_on_other_rows(dm, name):
    torch.manual_seed(0)
    model = make(name, dm).eval()
    rows = np.arange(12)
    with torch.no_grad():
        whole = model(eval_batch(dm, model, rows))
        mask = eval_batch(dm, model, rows)["candidate_mask"]
        for i in (0, 5, 11):
            alone = model(eval_batch(dm, model, rows[i : i + 1]))
            n = int(mask[i].sum())
            torch.testing.assert_close(alone[0, :n], whole[i, :n], atol=1e-5, rtol=1e-5)
        # the same row among other rows
        other = model(eval_batch(dm, model, np.array([20, 21, 5, 30])))
        n = int(mask[5].sum())
        torch.testing.assert_close(other[2, :n], whole[5, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS + PLM_VARIANTS)
def test_permuting_candidates_permutes_scores(dm, name):
    torch.manual_seed(0)
    model = make(name, dm).eval()
    batch = eval_batch(dm, model, np.arange(6))
    with torch.no_grad():
        s = model(batch)
        perm = torch.randperm(batch["candidates"].shape[1])
        batch2 = dict(batch, candidates=batch["candidates"][:, perm], candidate_mask=batch["candidate_mask"][:, perm])
        if "transition_features" in batch:  # per-candidate features move with their candidate
            batch2["transition_features"] = batch["transition_features"][:, perm]
        torch.testing.assert_close(model(batch2), s[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS + PLM_VARIANTS)
def test_history_padding_never_changes_scores(tiny_world, name):
    torch.manual_seed(0)
    short = MINDDataModule(str(tiny_world), history_length=50)
    model = make(name, short).eval()
    longer = MINDDataModule(str(tiny_world), history_length=80)  # more padding, same clicks (all < 50)
    rows = np.arange(10)
    b = short.behaviors("dev")
    assert b.history_lengths[rows].max() <= 50
    with torch.no_grad():
        a = model(eval_batch(short, model, rows))
        c = model(eval_batch(longer, model, rows))
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


CACHED = ["nrms", "glory", "glory_transitions", "fum", *PLM_VARIANTS, "npa_cacheable", "lstur", "hierec", "miner"]
CACHED += ["libfm", "deepfm", "fim", "dkn", "kred", "user_as_graph", "gerl", "gnewsrec", "digat"]


@pytest.mark.parametrize("name", CACHED + ["npa"])
def test_cached_evaluation_equals_plain_forward(dm, name, tmp_path):
    torch.manual_seed(0)
    model = make(name, dm)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model.connect_data(dm)
    trainer.fit(model, dm)
    cached = trainer.validate(model, dm, verbose=False)[0]
    from newsrec.metrics import ImpressionMetrics

    m = ImpressionMetrics()
    model.eval()
    with torch.no_grad():
        for batch in dm.val_dataloader():
            s = model(batch)
            m.update(s.double(), batch["labels"], mask=batch["candidate_mask"])
    plain = m.compute()
    for k in ("auc", "mrr", "ndcg@5", "ndcg@10"):
        assert cached[f"val/{k}"] == pytest.approx(float(plain[k]), abs=1e-5)
    assert cached["val/impressions"] == len(dm.behaviors("dev"))


def test_training_lowers_loss_and_checkpoint_loads_weights_only(dm, tmp_path):
    torch.manual_seed(0)
    model = make("glory", dm, lr=3e-3, lr_schedule="constant")
    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)],
    )
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer.callbacks.append(Record())
    model.connect_data(dm)
    trainer.fit(model, dm)
    assert all(np.isfinite(losses))
    k = len(losses) // 3
    assert np.mean(losses[-k:]) < np.mean(losses[:k])
    ckpt = tmp_path / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)  # plain data only: no pickled classes
    assert raw["hyper_parameters"]["num_graph_neighbors"] == 3
    loaded = GLORY.load_from_checkpoint(ckpt, weights_only=True)
    for (n1, p1), (_, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(p1.cpu(), p2.cpu(), msg=n1)


def test_empty_histories_give_finite_scores(dm):
    b = dm.behaviors("dev")
    model = make("glory", dm).eval()
    batch = eval_batch(dm, model, np.arange(4))
    batch["history_mask"][:] = False  # every history empty
    batch["subgraph"].history_position[:] = -1
    with torch.no_grad():
        s = model(batch)
    assert torch.isfinite(s).all()
    assert len(b) > 0


def test_prediction_gives_scores_in_file_order(dm, tmp_path):
    model = make("nrms", dm)
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    out = trainer.predict(model.connect_data(dm, stage="predict"), dm)
    ids = np.concatenate([o["impression_ids"] for o in out])
    scores = [s for o in out for s in o["scores"]]
    b = dm.behaviors("dev")
    assert sorted(ids.tolist()) == sorted(b.impression_ids.tolist())
    by_id = dict(zip(ids.tolist(), scores))
    for r in range(len(b)):
        assert len(by_id[int(b.impression_ids[r])]) == b.num_candidates[r]


def test_fum_users_are_cacheable_and_options_validated(dm):
    torch.manual_seed(0)
    model = make("fum", dm).eval()
    batch = eval_batch(dm, model, np.arange(5))
    with torch.no_grad():
        news = model.encode_news(batch["news"])
        users = model.encode_users(batch, news)[batch["user_index"]]
        expect = torch.einsum("bd,bcd->bc", users, news[batch["candidates"]])
        torch.testing.assert_close(model(batch), expect)
    with pytest.raises(ValueError, match="genres"):
        FUM(genres=("title", "body"))
    with pytest.raises(ValueError, match="use_fine"):
        FUM(use_fine=False, use_coarse=False)
    with pytest.raises(ValueError, match="news_activation"):
        FUM(news_activation="tanh")
    # the official code's ReLU makes every news vector non-negative; "none" leaves it linear
    with torch.no_grad():
        assert (news >= 0).all()
        linear = make("fum", dm, news_activation="none").eval()
        assert (linear.encode_news(batch["news"]) < 0).any()
    for variant in ({"use_fine": False}, {"use_coarse": False}, {"genres": ("title",)}):
        m = FUM(
            num_words=dm.num_words,
            num_entity_ids=dm.num_entity_ids,
            num_categories=dm.num_categories,
            num_subcategories=dm.num_subcategories,
            category_dim=8,
            entity_heads=2,
            entity_head_dim=4,
            fine_dim=6,
            fine_heads=3,
            **SMALL,
            **variant,
        ).eval()
        with torch.no_grad():
            assert torch.isfinite(m(eval_batch(dm, m, np.arange(3)))).all()


def test_glory_approximate_mode_uses_exact_vectors_for_history_and_candidates(dm):
    torch.manual_seed(0)
    model = make("glory", dm, neighbor_cache_every=5).eval()
    dm.configure(model.data_requirements())
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        exact = model.encode_history_news(batch["news"])
        model._neighbor_cache = model.encode_all_news(dm.news_dataloader(64)).history
        model.train()
        for layer in model.modules():  # train mode, no dropout
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
        approx = model.encode_batch_news(batch)
    # with an up-to-date cache, approximate = exact everywhere
    torch.testing.assert_close(approx, exact, atol=1e-5, rtol=1e-5)
    model._neighbor_cache = torch.zeros_like(model._neighbor_cache)  # a stale cache
    with torch.no_grad():
        approx = model.encode_batch_news(batch)
    needed = torch.zeros(len(exact), dtype=torch.bool)
    needed[batch["history"][batch["history_mask"]]] = True
    needed[batch["candidates"][batch["candidate_mask"]]] = True
    torch.testing.assert_close(approx[needed], exact[needed], atol=1e-5, rtol=1e-5)
    assert (approx[~needed] == 0).all() and (~needed).any()


def test_fit_initialises_embeddings_from_pretrained_vectors(dm, tmp_path):
    model = make("glory", dm)
    words, entities = dm.word_vectors(), dm.entity_vectors()
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model.connect_data(dm), dm)
    torch.testing.assert_close(model.word_embedding.weight.detach(), torch.from_numpy(words))
    torch.testing.assert_close(model.entity_embedding.weight.detach(), torch.from_numpy(entities))
    bad = NRMS(num_words=dm.num_words, word_dim=64, num_heads=2, head_dim=8, attention_hidden=8)
    with pytest.raises(ValueError, match="word_dim|dimension"):
        bad.connect_data(dm)


@pytest.mark.parametrize("direction", ["in", "out"])
def test_glory_history_news_gather_their_graph_neighbours_and_nothing_else(dm, direction):
    """Changing the title of a news that is only a sampled graph neighbour of user 0's history
    changes user 0's vector (through the GGNN), and nobody else's; without the news graph it
    changes nothing."""
    torch.manual_seed(0)
    model = make("glory", dm, graph_direction=direction, num_graph_hops=1).eval()
    dm.configure(model.data_requirements())
    batch = dm.val_dataloader().dataset[np.arange(6)]
    sg = batch["subgraph"]
    used = torch.zeros(len(batch["news_rows"]), dtype=torch.bool)
    used[batch["history"][batch["history_mask"]]] = True
    used[batch["candidates"][batch["candidate_mask"]]] = True
    # a node of user 0's subgraph that is neither a history news nor a candidate of anyone
    node_rows = sg.node_index[sg.batch == 0]
    only_neighbour = [int(r) for r in node_rows if not used[r] and (sg.node_index[sg.batch != 0] != r).all()]
    assert only_neighbour, "the tiny world should give user 0 a neighbour-only news"
    row = only_neighbour[0]

    def users(m, b):
        with torch.no_grad():
            return m.encode_users(b, m.encode_history_news(b["news"]))

    before = users(model, batch)
    news = dict(batch["news"], title=batch["news"]["title"].clone())
    news["title"][row] = torch.flip(news["title"][row], [0]).roll(3) % dm.num_words
    news["title"][row, 0] = 1 + (news["title"][row, 0] % (dm.num_words - 1))
    after = users(model, dict(batch, news=news))
    assert not torch.allclose(after[0], before[0])
    torch.testing.assert_close(after[1:], before[1:])
    plain = make("glory", dm, use_news_graph=False).eval()
    torch.testing.assert_close(users(plain, dict(batch, news=news)), users(plain, batch))


def test_glory_mean_edge_weights_are_count_weights_normalised_per_node(dm):
    """``ggnn_edge_weights="mean"`` equals ``"count"`` run on weights that a hand computation
    divided by each node's incoming total; it ignores a common scale of the counts, which
    ``"count"`` does not; unknown settings are refused."""
    torch.manual_seed(0)
    mean = make("glory", dm, graph_edges="sampled", ggnn_edge_weights="mean").eval()
    count = make("glory", dm, graph_edges="sampled", ggnn_edge_weights=True).eval()
    count.load_state_dict(mean.state_dict())
    dm.configure(mean.data_requirements())
    batch = dm.val_dataloader().dataset[np.arange(6)]
    sg = batch["subgraph"]
    assert sg.edge_weight.max() > 1  # the tiny world has repeated transitions

    def users(m, b):
        with torch.no_grad():
            return m.encode_users(b, m.encode_history_news(b["news"]))

    def with_weights(w):
        g = sg.clone()
        g.edge_weight = w
        return dict(batch, subgraph=g)

    target = sg.edge_index[1]
    total = torch.zeros(sg.n_id.numel()).index_add_(0, target, sg.edge_weight.float())
    by_hand = sg.edge_weight.float() / total[target]
    torch.testing.assert_close(users(mean, batch), users(count, with_weights(by_hand)))
    torch.testing.assert_close(users(mean, with_weights(sg.edge_weight * 7.0)), users(mean, batch))
    assert not torch.allclose(users(count, with_weights(sg.edge_weight * 7.0)), users(count, batch))
    for bad in ("sum", 2.0, ["mean"]):
        with pytest.raises(ValueError, match="ggnn_edge_weights"):
            make("glory", dm, ggnn_edge_weights=bad)


def test_fum_fine_grained_user_model_reads_words_across_clicked_news():
    """FUM's claim in miniature: a user's class is the XOR of the values of the two cue words
    their clicked news carry (4 cues, two per value; each clicked news shows one of the user's
    two cues among filler words), so no clicked news says anything alone and no vote of per-cue
    scores over the history beats the majority class (4 of the 6 cue pairs; a logistic regression
    on the history's cue counts: 0.67). The fine-grained user model alone (no coarse part), with
    a linear head on its user vector, learns it (0.98); with Fastformer replaced by a per-token
    linear layer (no word sees another news) it reaches 0.82 and fails."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cues, value, filler, title, history = 4, np.array([0, 1, 0, 1]), 40, 6, 8
    # news table: row n carries cue n % 4 (word ids 1..4) at a random position among fillers
    num_news = 400
    titles = rng.integers(cues + 1, cues + 1 + filler, (num_news, title))
    titles[np.arange(num_news), rng.integers(0, title, num_news)] = np.arange(num_news) % cues + 1
    by_cue = np.arange(num_news).reshape(-1, cues)  # by_cue[:, c]: the news with cue c

    def users(n):
        first = rng.integers(0, cues, n)
        second = (first + rng.integers(1, cues, n)) % cues
        cue = np.where(rng.random((n, history)) < 0.5, first[:, None], second[:, None])
        clicks = by_cue[rng.integers(0, len(by_cue), (n, history)), cue]
        mask = np.arange(history) < rng.integers(4, history + 1, (n, 1))  # padded histories
        return torch.as_tensor(clicks * mask), torch.as_tensor(mask), torch.as_tensor(value[first] ^ value[second])

    sizes = {**SMALL, **TINY_FUM, "word_dim": 16, "attention_hidden": 16, "dropout": 0.0, "fine_dim": 24}
    model = FUM(num_words=cues + 1 + filler, use_coarse=False, genres=("title",), **sizes)
    head = torch.nn.Linear(model.fine_proj.out_features, 2)
    news = {"title": torch.as_tensor(titles)}
    optimiser = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=3e-3)

    def logits(hist, mask):
        return head(model.encode_users({"history": hist, "history_mask": mask, "news": news}, None))

    for _ in range(300):
        hist, mask, label = users(64)
        loss = torch.nn.functional.cross_entropy(logits(hist, mask), label)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    hist, mask, label = users(1000)
    with torch.no_grad():
        accuracy = (logits(hist, mask).argmax(-1) == label).float().mean().item()
    assert accuracy > 0.9, accuracy  # a vote of per-cue scores: at most ~0.67


def test_beyond_accuracy_is_logged_in_test_and_off_in_validation_by_default(dm, tmp_path):
    from newsrec.metrics import BEYOND_ACCURACY_NAMES, BeyondAccuracyMetrics

    torch.manual_seed(0)
    model = make("nrms", dm).connect_data(dm, stage="test")
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    val = pl.Trainer(**quiet).validate(model, dm, verbose=False)[0]
    assert not any(f"val/{n}@10" in val for n in BEYOND_ACCURACY_NAMES)
    test = pl.Trainer(**quiet).test(model, dm, verbose=False)[0]
    keys = [f"test/{n}@10" for n in (*BEYOND_ACCURACY_NAMES, "ild_excluded")]
    assert all(k in test and np.isfinite(test[k]) for k in keys)
    # equal to the metric fed by hand with the plain forward's scores, on corpus rows
    ref = BeyondAccuracyMetrics(10, **dm.beyond_accuracy_inputs())
    model.eval()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            rows = batch["news_rows"]
            hist = batch["history"][batch["user_index"]]
            ref.update(
                model(batch),
                batch["candidate_mask"],
                rows[batch["candidates"]],
                rows[hist],
                batch["history_mask"][batch["user_index"]],
            )
    want = ref.compute()
    for n in BEYOND_ACCURACY_NAMES:
        assert test[f"test/{n}@10"] == pytest.approx(float(want[n]), abs=1e-5), n
    model.beyond_accuracy = "all"
    val = pl.Trainer(**quiet).validate(model, dm, verbose=False)[0]
    assert all(f"val/{n}@10" in val for n in BEYOND_ACCURACY_NAMES)


@pytest.mark.parametrize("name", ["nrms", "glory", "glory_transitions", "fum", *PLM_VARIANTS])
def test_every_model_trains_in_a_plain_pytorch_loop(tiny_world, name):
    """The handshake serves a plain loop: no Trainer, the same datamodule and model; the loss
    falls, the pretrained tables were initialised, and evaluation with every news encoded
    once (the news chunks the handshake hands over) equals the plain forward."""
    torch.manual_seed(0)
    dm = MINDDataModule(str(tiny_world), batch_size=8, history_length=20)
    model = make(name, dm, dropout=0.0).connect_data(dm)
    if model.word_embedding is not None:  # a PLM model has no word table
        torch.testing.assert_close(model.word_embedding.weight.detach(), torch.from_numpy(dm.word_vectors()))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _epoch in range(2):
        for batch in dm.train_dataloader():
            loss = model.training_loss(batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
    k = len(losses) // 3
    assert np.mean(losses[-k:]) < np.mean(losses[:k])
    model.eval()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        plain = model(batch)
        with model.cached_news():
            cached = model(batch)
    m = batch["candidate_mask"]
    torch.testing.assert_close(cached[m], plain[m], atol=1e-5, rtol=1e-5)


def test_a_model_that_missed_the_handshake_says_so(tiny_world):
    dm = MINDDataModule(str(tiny_world), batch_size=8, history_length=20)
    model = make("glory", dm)
    dm.configure(make("nrms", dm).data_requirements())  # configured for another model
    batch = next(iter(dm.val_dataloader()))
    with pytest.raises(ValueError, match="connect_data"):
        model(batch)
