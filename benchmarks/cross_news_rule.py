"""Can a user model learn an interest that shows only in words of *different* clicked news read
together? NRMS's user model (news encoder, then self-attention over the clicked-news vectors)
against FUM's fine-grained user model (Fastformer over the concatenated words of every clicked
news), each trained directly on the rule, with nothing else to learn.

    python benchmarks/cross_news_rule.py [--seeds 0 1 2] [--steps 2000] [--threads 1]

The rule is the synthetic generator's cue-word rule (``num_cues``; see
:mod:`newsrec.data.synthetic`): a user has two of ``C`` cue words, every clicked news carries one
of them (10 % carry a random cue) among ``T - 1`` random filler words, and the user's class (their
aspect) is the two cues' values summed modulo ``A`` (values spread evenly over the classes), so
no single clicked news tells anything about it. Each model reads the ``H`` clicked news and
predicts the class with a linear head (cross-entropy); a third, *bag of words* (mean of the
clicked words' embeddings), shows how much a reading without cross-news interaction gets.

Tasks: the rule as it is (clean labels, plenty of users), and with few users and most labels
replaced by random classes (``noise``) — the regime of a click log, where a click says little
about the user's interest. Test accuracy is on fresh users with clean labels (chance = 1/A).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table  # noqa: E402

from newsrec.models import FUM  # noqa: E402
from newsrec.nn import TextEncoder, UserEncoder  # noqa: E402

VOCAB, HISTORY, TITLE, WORD_DIM = 300, 30, 10, 50

#: (name, cues C, classes A, training users N, label noise)
TASKS = [
    ("clean rule", 6, 3, 20000, 0.0),
    ("noisy, 6 cues", 6, 3, 3000, 0.8),
    ("noisy, 10 cues", 10, 5, 3000, 0.5),
]


class CueRule:
    """Histories ``[N, HISTORY, TITLE]`` of word ids (0 = padding, 1..C = cue words) and classes."""

    def __init__(self, num_cues: int, num_classes: int, seed: int) -> None:
        self.C, self.A = num_cues, num_classes
        self.rng = np.random.default_rng(seed)
        self.value = self.rng.permutation(np.arange(num_cues) % num_classes)

    def sample(self, n: int, noise: float = 0.0) -> tuple[Tensor, Tensor]:
        rng, C = self.rng, self.C
        first = rng.integers(0, C, n)
        second = (first + rng.integers(1, C, n)) % C
        label = (self.value[first] + self.value[second]) % self.A
        words = rng.integers(C + 1, VOCAB, (n, HISTORY, TITLE))
        cue = np.where(rng.random((n, HISTORY)) < 0.5, first[:, None], second[:, None])
        cue = np.where(rng.random((n, HISTORY)) < 0.1, rng.integers(0, C, (n, HISTORY)), cue)
        position = rng.integers(0, TITLE, (n, HISTORY, 1))
        np.put_along_axis(words, position, cue[..., None] + 1, axis=2)
        flip = rng.random(n) < noise
        label = np.where(flip, rng.integers(0, self.A, n), label)
        return torch.as_tensor(words), torch.as_tensor(label)


class NRMSUser(nn.Module):
    """NRMS: each clicked news encoded alone (self-attention + pooling), then self-attention and
    pooling over the clicked-news vectors."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.news = TextEncoder(nn.Embedding(VOCAB + 1, WORD_DIM, padding_idx=0), 4, 16, 32, dropout=0.2)
        self.user = UserEncoder(64, 4, 16, 32)
        self.head = nn.Linear(64, num_classes)

    def forward(self, words: Tensor) -> Tensor:
        B = len(words)
        news = self.news(words.reshape(B * HISTORY, TITLE)).reshape(B, HISTORY, -1)
        return self.head(self.user(news))


class FUMFineUser(nn.Module):
    """FUM's fine-grained user model, ``newsrec.models.FUM(use_coarse=False)`` itself: every
    clicked news' words concatenated into one sequence, Fastformer, pooled per news and then over
    the clicks (its news-level encoder stays unused). Each user's clicked news become rows of a
    per-batch news table."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fum = FUM(
            num_words=VOCAB + 1,
            word_dim=WORD_DIM,
            num_heads=4,
            head_dim=16,
            attention_hidden=32,
            news_views=("title",),
            use_coarse=False,
            genres=("title",),
            fine_dim=48,
            fine_heads=3,
            dropout=0.2,
            pretrained_words=False,
        )
        self.head = nn.Linear(self.fum.dim, num_classes)

    def forward(self, words: Tensor) -> Tensor:
        B = len(words)
        history = torch.arange(B * HISTORY).reshape(B, HISTORY)
        batch = {"history": history, "history_mask": torch.ones_like(history, dtype=torch.bool)}
        batch["news"] = {"title": words.reshape(B * HISTORY, TITLE)}
        return self.head(self.fum.encode_users(batch, None))


class BagOfWords(nn.Module):
    """Mean of the clicked words' embeddings: no interaction between the words of different news."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(VOCAB + 1, 64, mode="mean")
        self.head = nn.Linear(64, num_classes)

    def forward(self, words: Tensor) -> Tensor:
        return self.head(self.embedding(words.reshape(len(words), -1)))


MODELS = {"bag of words": BagOfWords, "NRMS user model": NRMSUser, "FUM fine-grained user model": FUMFineUser}


def train(model: nn.Module, words: Tensor, labels: Tensor, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(words), (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(words[rows]), labels[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


@torch.no_grad()
def accuracy(model: nn.Module, words: Tensor, labels: Tensor) -> float:
    model.eval()
    predicted = torch.cat([model(w).argmax(-1) for w in words.split(500)])
    return (predicted == labels).float().mean().item() * 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=2000, help="training steps of 64 users")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for name, C, A, N, noise in TASKS:
        acc: dict[str, list[float]] = {m: [] for m in MODELS}
        for seed in a.seeds:
            rule = CueRule(C, A, seed)
            train_words, train_labels = rule.sample(N, noise)
            test_words, test_labels = rule.sample(3000)
            for m, cls in MODELS.items():
                torch.manual_seed(seed)
                model = cls(A)
                train(model, train_words, train_labels, a.steps, seed)
                acc[m].append(accuracy(model, test_words, test_labels))
        row = {"task": f"{name} (C={C}, A={A}, {N} users, noise {noise}; chance {100 / A:.1f})"}
        for m, values in acc.items():
            row[m] = f"{np.mean(values):.1f} ± {np.std(values):.1f}"
        rows.append(row)
        print(row, flush=True)
    print(f"machine: {machine()}; seeds {a.seeds}, {a.steps} steps of 64 users; test accuracy (%), clean labels")
    print(table(rows, ["task", *MODELS]))


if __name__ == "__main__":
    main()
