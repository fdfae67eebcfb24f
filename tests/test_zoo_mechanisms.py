"""One mechanism test per baseline of the papers' tables: what each model adds, shown on a tiny
in-memory task where that mechanism (and only it) carries the signal, or checked against a
reference written with loops."""

import numpy as np
import pytest
import torch
from _mechanisms import CATEGORIES, NEWS, TINY, USERS, WORDS, auc, batch_for, news_table, sample, train

from newsrec.models import DKN, FIM, GRU, KRED, LSTUR, MINER, NAML, NPA, NRMS, DeepFM, HieRec, LibFM


def same_category_task(news, seed):
    """The clicked news shares its category with the 5 clicks of the history; titles are noise."""
    cat = news["category"].numpy()
    rng = np.random.default_rng(seed)
    train_rows, test_rows = np.arange(1, 160), np.arange(160, NEWS)

    def history_of(rows):
        def make(pref):
            h = np.stack([rng.choice(rows[cat[rows] == p], 5) for p in pref])
            return torch.as_tensor(h), torch.ones(len(pref), 5, dtype=torch.bool)

        return make

    def make(rows, n=32):
        def draw():
            return sample(news, rng, rows, lambda i: rng.integers(1, CATEGORIES + 1, len(i)), history_of(rows), batch=n)

        return draw

    return make(train_rows), make(test_rows, 200)


def test_naml_category_view_wins_where_only_categories_carry_the_signal():
    news = news_table()
    torch.manual_seed(0)
    sizes = dict(num_words=WORDS, num_categories=CATEGORIES + 1, num_subcategories=CATEGORIES + 1)
    results = {}
    for views in (("title",), ("title", "category")):
        torch.manual_seed(0)
        model = NAML(**sizes, **TINY, num_filters=16, category_dim=8, views=views)
        draw, test = same_category_task(news, seed=1)
        train(model, draw, steps=120)
        results[views] = auc(model, test())
    # the category tables start at Keras' ±0.05 as the original's (0.85 here; N(0, 1) rows: 0.9+)
    assert results[("title", "category")] > 0.8
    assert results[("title", "category")] > results[("title",)] + 0.2, results


def test_lstur_long_term_vector_carries_a_preference_the_history_does_not_show():
    news = news_table()
    rng = np.random.default_rng(0)
    train_rows, test_rows = np.arange(1, 160), np.arange(160, NEWS)
    taste = rng.integers(1, CATEGORIES + 1, USERS + 1)  # user u prefers category taste[u]

    def empty(pref):  # an empty history: only the user's id can carry the preference
        return torch.zeros(len(pref), 3, dtype=torch.long), torch.zeros(len(pref), 3, dtype=torch.bool)

    def draw(rows, users):
        return sample(news, rng, rows, lambda u: taste[u], empty, users=torch.as_tensor(users))

    sizes = dict(num_words=WORDS, num_categories=CATEGORIES + 1, num_subcategories=CATEGORIES + 1)
    torch.manual_seed(0)
    model = LSTUR(**sizes, num_users=USERS + 1, **TINY, num_filters=12, category_dim=4)
    train(model, lambda: draw(train_rows, rng.integers(1, USERS + 1, 32)), steps=150)
    known = draw(test_rows, np.arange(1, USERS + 1))
    assert auc(model, known) > 0.9  # news never seen in training, ranked by the user's long-term taste
    unseen = draw(test_rows, np.zeros(USERS, dtype=np.int64))  # row 0: users the training split lacks
    with torch.no_grad():
        scores = model(unseen)
    assert torch.isfinite(scores).all()
    assert auc(model, unseen) == pytest.approx(0.5)  # the unknown user's zero vector: no preference
    # a model without user ids cannot see the preference (its users are all the empty history)
    torch.manual_seed(0)
    gru = GRU(**sizes, **TINY)
    train(gru, lambda: draw(train_rows, rng.integers(1, USERS + 1, 32)), steps=150)
    assert auc(gru, known) < 0.7


@pytest.mark.parametrize("personalised", [True, False])
def test_npa_unseen_users_get_finite_scores_and_only_the_paper_form_personalises_candidates(personalised):
    news = news_table()
    sizes = dict(num_words=WORDS, num_categories=CATEGORIES + 1, num_subcategories=CATEGORIES + 1)
    torch.manual_seed(0)
    model = NPA(
        **sizes, num_users=USERS + 1, **TINY, num_filters=16, user_dim=6, query_dim=8, personalised=personalised
    )
    model.eval()
    history = torch.tensor([[5, 6, 7]] * 3)
    cands = torch.tensor([[10, 11, 12, 13]] * 3)
    users = torch.tensor([0, 3, 7])  # 0: a user the training split lacks
    with torch.no_grad():
        scores = model(batch_for(news, history, torch.ones(3, 3, dtype=torch.bool), cands, users))
        user_vectors = model.encode_users(
            batch_for(news, history, torch.ones(3, 3, dtype=torch.bool), cands, users), model.encode_news(news)
        )
    assert torch.isfinite(scores).all()
    # with one history, the dot product of each user's vector with shared news vectors is the score
    # exactly when candidates are not personalised
    shared = torch.einsum("bd,bcd->bc", user_vectors, model.encode_news(news)[cands])
    assert torch.allclose(scores, shared, atol=1e-5) != personalised


def test_hierec_score_equals_a_reference_written_with_loops():
    news = news_table()
    news["subcategory"] = (news["category"] * 2 + torch.arange(NEWS) % 2).clamp_max(2 * CATEGORIES + 1)
    news["subcategory"][0] = 0
    torch.manual_seed(0)
    sizes = dict(num_words=WORDS, num_entity_ids=30, num_categories=CATEGORIES + 1)
    model = HieRec(**sizes, num_subcategories=2 * CATEGORIES + 2, **TINY).eval()
    with torch.no_grad():  # the official scores and tables start at zero: give them values to check
        for p in (model.subtopic_pooling, model.topic_pooling, model.user_pooling):
            p.score.weight.normal_()
        model.topic_embedding.weight.normal_()
        model.subtopic_embedding.weight.normal_()
    history = torch.tensor([[5, 6, 7, 8, 0], [9, 9, 12, 0, 0], [0, 0, 0, 0, 0]])
    mask = history != 0
    cands = torch.tensor([[5, 20, 30], [9, 40, 41], [1, 2, 3]])
    batch = batch_for(news, history, mask, cands)
    T = CATEGORIES + 1
    with torch.no_grad():
        got = model(batch)
        vec = model.encode_news(news)
        tables = model.encode_users(batch, vec)
        want = torch.zeros_like(got)
        for b in range(3):
            clicks = [int(x) for x in history[b][mask[b]]]
            table = tables[b]
            n = max(len(clicks), 1)

            def subtopic_interest(s, clicks=clicks):
                h = vec[[x for x in clicks if int(news["subcategory"][x]) == s]]
                a = torch.softmax(model.subtopic_pooling.score(h)[:, 0], 0)
                return (a[:, None] * h).sum(0) + model.subtopic_embedding.weight[s]

            def topic_interest(t, clicks=clicks):  # its subtopic interests, scored linearly + by their click counts
                subs = sorted({int(news["subcategory"][x]) for x in clicks if int(news["category"][x]) == t})
                v = torch.stack([subtopic_interest(s) for s in subs])
                counts = torch.tensor([sum(int(news["subcategory"][x]) == s for x in clicks) for s in subs])
                a = torch.softmax(model.topic_pooling.score(v)[:, 0] + model.count_score(counts), 0)
                return (a[:, None] * v).sum(0) + model.topic_embedding.weight[t]

            for c_i, c in enumerate(cands[b].tolist()):
                t, s = int(news["category"][c]), int(news["subcategory"][c])
                in_t = [x for x in clicks if int(news["category"][x]) == t]
                in_s = [x for x in clicks if int(news["subcategory"][x]) == s]
                u, tv, sv = table[0, :-1], table[1 + t, :-1], table[1 + T + s, :-1]
                assert table[1 + t, -1] == pytest.approx(len(in_t) / n)
                assert table[1 + T + s, -1] == pytest.approx(len(in_s) / n)
                if in_s:
                    torch.testing.assert_close(sv, subtopic_interest(s), atol=1e-5, rtol=1e-5)
                if in_t:
                    torch.testing.assert_close(tv, topic_interest(t), atol=1e-5, rtol=1e-5)
                c_vec = vec[c]
                want[b, c_i] = (
                    0.15 * (len(in_t) / n) * (tv @ c_vec) + 0.7 * (len(in_s) / n) * (sv @ c_vec) + 0.15 * (u @ c_vec)
                )
        if clicks := [int(x) for x in history[0][mask[0]]]:  # the user level: topics by their click counts
            topics = sorted({int(news["category"][x]) for x in clicks})
            v = tables[0, [1 + t for t in topics], :-1]
            counts = torch.tensor([sum(int(news["category"][x]) == t for x in clicks) for t in topics])
            a = torch.softmax(model.user_pooling.score(v)[:, 0] + model.count_score(counts), 0)
            torch.testing.assert_close(tables[0, 0, :-1], (a[:, None] * v).sum(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.all(got[2] == 0)  # an empty history: no interest, score 0
    # training, as the official code: the weights divided by λ_u; interest_mask=1 leaves u·c alone
    users = tables
    for mask_prob, expect in ((1.0, "user"), (0.0, "all")):
        model.interest_mask = mask_prob
        model.train()
        trained = model.score_candidates(users, vec[cands], batch)
        model.eval()
        if expect == "user":
            torch.testing.assert_close(trained, torch.einsum("bd,bcd->bc", users[:, 0, :-1], vec[cands]))
        else:
            torch.testing.assert_close(trained, got / 0.15, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("aggregation", ["max", "mean", "weighted"])
def test_miner_aggregation_and_disagreement_follow_their_definitions(aggregation):
    news = news_table()
    torch.manual_seed(0)
    model = MINER(
        num_words=WORDS, num_categories=CATEGORIES + 1, **TINY, num_codes=3, code_dim=8, aggregation=aggregation
    )
    history = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = history != 0
    cands = torch.tensor([[11, 12, 13], [14, 15, 16]])
    batch = batch_for(news, history, mask, cands)
    model.eval()
    with torch.no_grad():
        got = model(batch)
        vec = model.encode_news(news)
        for b in range(2):
            h = vec[history[b][mask[b]]]
            interests = []
            for code in model.poly_attention.codes:
                a = torch.softmax(torch.tanh(model.poly_attention.proj(h)) @ code, 0)
                interests.append((a[:, None] * h).sum(0))
            products = torch.stack(interests) @ vec[cands[b]].T  # [K, C]
            ref = {"max": products.amax(0), "mean": products.mean(0)}.get(aggregation)
            if aggregation == "weighted":  # target-aware: softmax_j(c^T GELU(W v_j)), as newsreclib
                projected = torch.nn.functional.gelu(model.target_attention.proj(torch.stack(interests)))  # [K, d]
                ref = (torch.softmax(vec[cands[b]] @ projected.T, 1) * products.T).sum(1)
            torch.testing.assert_close(got[b], ref, atol=1e-5, rtol=1e-5)
    # the regulariser: beta × the mean pairwise cosine of each user's interests, added in training
    model.train()
    with_beta = model.training_loss(batch)
    interests = model.poly_attention(vec[history], mask)
    model.beta = 0.0
    without = model.training_loss(batch)
    unit = torch.nn.functional.normalize(interests, dim=-1)
    expected = 0.8 * torch.einsum("bkd,bjd->bkj", unit, unit).mean()
    torch.testing.assert_close(with_beta - without, expected, atol=1e-5, rtol=1e-5)


def test_gru_reads_clicks_in_order():
    news = news_table()
    torch.manual_seed(0)
    model = GRU(num_words=WORDS, **TINY).eval()
    history = torch.tensor([[5, 6, 7, 8], [8, 7, 6, 5]])
    batch = batch_for(news, history, torch.ones(2, 4, dtype=torch.bool), torch.tensor([[11, 12], [11, 12]]))
    with torch.no_grad():
        scores = model(batch)
    assert not torch.allclose(scores[0], scores[1])  # an attention-pooling user (NRMS) would give equal scores


@pytest.mark.parametrize("cls", [LibFM, DeepFM])
def test_feature_models_learn_a_user_by_category_preference_that_popularity_cannot(cls):
    news = news_table()
    rng = np.random.default_rng(0)
    train_rows, test_rows = np.arange(1, 160), np.arange(160, NEWS)
    taste = rng.integers(1, CATEGORIES + 1, USERS + 1)

    def empty(pref):
        return torch.zeros(len(pref), 3, dtype=torch.long), torch.zeros(len(pref), 3, dtype=torch.bool)

    def draw(rows, users):
        return sample(news, rng, rows, lambda u: taste[u], empty, users=torch.as_tensor(users))

    sizes = dict(num_words=WORDS, num_categories=CATEGORIES + 1, num_subcategories=CATEGORIES + 1, num_entity_ids=30)
    extra = {"hidden_dims": (16,), "dnn_dropout": 0.0} if cls is DeepFM else {}
    torch.manual_seed(0)
    model = cls(**sizes, num_users=USERS + 1, num_news=NEWS, **TINY, factor_dim=8, **extra)
    train(model, lambda: draw(train_rows, rng.integers(1, USERS + 1, 32)), steps=150, lr=3e-2)
    # test news were never clicked in training: only user × category carries the preference;
    # every news is equally popular here, so popularity ranks at chance (0.5)
    assert auc(model, draw(test_rows, np.arange(1, USERS + 1))) > 0.85


def test_libfm_score_equals_the_factorisation_machine_written_with_loops():
    news = news_table()
    torch.manual_seed(0)
    sizes = dict(num_words=WORDS, num_categories=CATEGORIES + 1, num_subcategories=CATEGORIES + 1, num_entity_ids=30)
    model = LibFM(**sizes, num_users=USERS + 1, num_news=NEWS, **TINY, factor_dim=5).eval().requires_grad_(False)
    for field in model.fields.values():  # random linear weights too, so that every term shows
        torch.nn.init.normal_(field.linear.weight)
        field.linear.weight.data[0] = 0
    model.bias.data.fill_(0.3)
    model.idf.copy_(torch.rand(WORDS) + 0.5)
    history = torch.tensor([[5, 6, 0], [7, 0, 0]])
    cands = torch.tensor([[10, 11], [12, 13]])
    batch = batch_for(news, history, history != 0, cands, users=torch.tensor([3, 0]))
    with torch.no_grad():
        got = model(batch)
    for b in range(2):
        clicks = [int(x) for x in history[b] if x]
        for c_i, c in enumerate(cands[b].tolist()):
            feats = [("user", int(batch.history_users[b]), 1.0)]  # (field, id, value)
            for x in clicks:
                title = [int(w) for w in news["title"][x] if w]
                feats += [("clicked_words", w, float(model.idf[w]) / len(title) / len(clicks)) for w in title]
                feats.append(("clicked_categories", int(news["category"][x]), 1.0 / len(clicks)))
            title = [int(w) for w in news["title"][c] if w]
            feats += [("news", c, 1.0), ("category", int(news["category"][c]), 1.0)]
            feats += [("subcategory", int(news["subcategory"][c]), 1.0)]
            feats += [("entities", int(e), 1.0) for e in news["entities"][c] if e]
            feats += [("title_words", w, float(model.idf[w]) / len(title)) for w in title]
            feats = [f for f in feats if f[1] != 0]
            want = float(model.bias)
            for i, (f, idx, x) in enumerate(feats):
                want += x * float(model.fields[f].linear.weight[idx, 0])
                for g, jdx, y in feats[i + 1 :]:
                    want += x * y * float(model.fields[f].factors.weight[idx] @ model.fields[g].factors.weight[jdx])
            assert float(got[b, c_i]) == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_fim_wins_where_the_interest_is_one_word_shared_across_titles():
    """The clicked candidate shares one word with one of five clicked titles; every title is five
    random words otherwise, and test titles use words never seen in training. Word-by-word
    matching finds the pair; a user vector pooled over 25 words dilutes it."""
    rng = np.random.default_rng(0)
    vocab = 3000

    def draw(low, high, n=32):
        title = torch.as_tensor(rng.integers(low, high, (n * 10 + 1, 5)))
        title[0] = 0
        shared = torch.as_tensor(rng.integers(low, high, n))
        hist = torch.arange(1, 5 * n + 1).view(n, 5)
        cands = torch.arange(5 * n + 1, 10 * n + 1).view(n, 5)
        title[hist[torch.arange(n), torch.as_tensor(rng.integers(0, 5, n))], rng.integers(0, 5)] = shared
        title[cands[:, 0], rng.integers(0, 5)] = shared
        news = {"title": title}
        return batch_for(news, hist, torch.ones(n, 5, dtype=torch.bool), cands)

    results = {}
    for cls, extra in ((FIM, {"num_filters": 16, "conv_channels": (8, 4)}), (NRMS, {})):
        torch.manual_seed(0)
        model = cls(num_words=vocab, **dict(TINY, word_dim=64), **extra)  # 64-d: a shared word stands out
        train(model, lambda: draw(1, 2000), steps=80, lr=3e-3)
        results[cls.__name__] = auc(model, draw(2000, vocab, n=200))
    assert results["FIM"] > 0.8 and results["FIM"] > results["NRMS"] + 0.1, results


@pytest.mark.parametrize("name", ["DKN", "KRED"])
def test_knowledge_models_win_where_entities_carry_the_signal_and_titles_do_not_name_them(name):
    """Each title is five random words (test titles: words never seen in training), one of them
    aligned with an entity; a reader's clicks and the clicked candidate share the entity. Only
    the entities carry the interest."""
    rng = np.random.default_rng(0)
    vocab, entities = 3000, 20

    def draw(low, high, n=32):
        title = torch.as_tensor(rng.integers(low, high, (n * 10 + 1, 5)))
        ent = torch.zeros_like(title)
        topic = torch.as_tensor(rng.integers(1, entities + 1, n))
        other = (topic.unsqueeze(1) + torch.as_tensor(rng.integers(1, entities, (n, 4)))) % entities + 1  # not topic
        hist = torch.arange(1, 5 * n + 1).view(n, 5)
        cands = torch.arange(5 * n + 1, 10 * n + 1).view(n, 5)
        col = torch.as_tensor(rng.integers(0, 5, n * 10 + 1))
        rows = torch.arange(n * 10 + 1)
        labels = torch.cat([torch.zeros(1, dtype=torch.long), topic.repeat_interleave(5),
                            torch.cat([topic[:, None], other], 1).reshape(-1)])  # fmt: skip
        ent[rows, col] = labels
        title[0], ent[0] = 0, 0
        news = {"title": title, "title_entity_words": ent, "title_entity_neighbors": torch.zeros(*ent.shape, 3).long()}
        news["entities"] = labels[:, None]  # KRED reads the news' entity list and its context
        news["entity_neighbors"] = torch.zeros(len(labels), 1, 3, dtype=torch.long)
        news |= {f: (labels[:, None] > 0).long() for f in ("entity_positions", "entity_counts", "entity_types")}
        return batch_for(news, hist, torch.ones(n, 5, dtype=torch.bool), cands)

    extra = {
        "DKN": (DKN, {"entity_dim": 16, "num_filters": 8, "windows": (1, 2, 3), "attention_dim": 32}),
        "KRED": (KRED, {"entity_dim": 16, "num_entity_neighbors": 3}),
    }
    results = {}
    for key, (cls, kw) in (("model", extra[name]), ("NRMS", (NRMS, {}))):
        torch.manual_seed(0)
        model = cls(num_words=vocab, num_entity_ids=entities + 1, **TINY, **kw)
        train(model, lambda: draw(1, 2000), steps=150, lr=3e-3)  # DKN's DNN predictor learns matching slowly
        results[key] = auc(model, draw(2000, vocab, n=200))
    assert results["model"] > 0.85 and results["model"] > results["NRMS"] + 0.2, results
