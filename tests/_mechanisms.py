"""What the zoo's mechanism tests share: a tiny news table, a batch builder, a training loop and
the AUC of a model on a batch (tests/test_zoo_mechanisms.py, tests/test_graph_mechanisms.py)."""

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from newsrec.core import NewsBatch

TINY = dict(word_dim=16, num_heads=2, head_dim=8, attention_hidden=8, dropout=0.0, pretrained_words=False)
CATEGORIES, NEWS, WORDS, USERS = 4, 240, 600, 24


def news_table(seed: int = 0) -> dict[str, torch.Tensor]:
    """Row 0 is padding; every news has a category 1..4 and a title of 5 random words that say
    nothing about the category (the words of a test news were never seen in training)."""
    g = torch.Generator().manual_seed(seed)
    category = torch.randint(1, CATEGORIES + 1, (NEWS,), generator=g)
    title = torch.randint(1, WORDS, (NEWS, 5), generator=g)
    category[0], title[0] = 0, 0
    entities = torch.randint(0, 30, (NEWS, 2), generator=g)
    entities[0] = 0
    return {
        "title": title,
        "category": category,
        "subcategory": category.clone(),
        "entities": entities,
        "row": torch.arange(NEWS),
    }


def batch_for(news, history, history_mask, candidates, users=None) -> NewsBatch:
    B = len(candidates)
    return NewsBatch(
        news=news,
        news_rows=torch.arange(len(news["title"])),
        history=history,
        history_mask=history_mask,
        candidates=candidates,
        candidate_mask=torch.ones_like(candidates, dtype=torch.bool),
        labels=torch.zeros_like(candidates),
        user_index=torch.arange(B),
        impression_ids=torch.arange(B),
        rows=torch.arange(B),
        history_users=users,
    )


def sample(news, rng, rows, preferred, history_of, users=None, batch=32):
    """Samples whose clicked news (column 0) has the preferred category, 4 negatives not."""
    cat = news["category"].numpy()
    pref = preferred(np.arange(batch)) if users is None else preferred(users.numpy())
    pos = np.array([rng.choice(rows[cat[rows] == p]) for p in pref])
    neg = np.stack([rng.choice(rows[cat[rows] != p], 4) for p in pref])
    history, mask = history_of(pref)
    return batch_for(news, history, mask, torch.as_tensor(np.concatenate([pos[:, None], neg], 1)), users)


def train(model, make_batch, steps=150, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.training_loss(make_batch()).backward()
        opt.step()
    return model.eval()


def auc(model, batch) -> float:
    with torch.no_grad():
        scores = model(batch).numpy()
    labels = np.zeros_like(scores)
    labels[:, 0] = 1
    return float(np.mean([roc_auc_score(y, s) for y, s in zip(labels, scores)]))
