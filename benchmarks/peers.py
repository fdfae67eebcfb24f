"""newsrec beside Microsoft recommenders 1.2.1 (TensorFlow NRMS, NAML, LSTUR, NPA) on one world.

    python benchmarks/peers.py --users 600 --news 600 --batches 60 --models nrms,naml,lstur,npa

The peer runs in its own virtual environment, made once under ``benchmarks/.cache``
(``recommenders==1.2.1 tensorflow-cpu==2.15.1 "numpy<2"``: the TensorFlow pin is only in its
``[gpu]`` extra and TF 2.16+ brings Keras 3, which it cannot use). Both sides read the same
synthetic MIND world (the peer's word/user/category dictionaries and embedding matrix are written
from it), train the same number of batches with the same sizes (title 30, history 50, 4
negatives, batch 32, constant Adam 1e-4, the recommenders notebooks' model sizes), one thread
each, in separate processes run alternately; every side's dev scores are re-scored by one
common per-impression scorer (AUC, MIND's MRR, nDCG@10) beside each side's own metric code.
A peer that cannot be installed (no network, a Python TensorFlow 2.15 lacks) is one line and a
non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
PINS = ("recommenders==1.2.1", "tensorflow-cpu==2.15.1", "numpy<2")
VENV = CACHE / "peer-venv-1.2.1"
TITLE, BODY, HISTORY, NEGATIVES, BATCH, LR = 30, 50, 50, 4, 32, 1e-4
#: the recommenders notebooks' sizes, and newsrec's arguments for the same models
PEER_SIZES = {
    "nrms": dict(head_num=20, head_dim=20, attention_hidden_dim=200),
    "naml": dict(filter_num=400, window_size=3, vert_emb_dim=100, subvert_emb_dim=100, attention_hidden_dim=200),
    "lstur": dict(filter_num=400, window_size=3, gru_unit=400, type="ini", attention_hidden_dim=200),
    "npa": dict(filter_num=400, window_size=3, user_emb_dim=100, attention_hidden_dim=200),
}
NEWSREC = {
    "nrms": ("NRMS", dict(num_heads=20, head_dim=20, attention_hidden=200)),
    "naml": ("NAML", dict(num_filters=400, window=3, category_dim=100, attention_hidden=200)),
    # the peer's LSTUR reads titles only (400 filters, GRU 400); the paper's, newsrec's, adds topic
    # and subtopic: 200 filters + 2 × 100 keeps the news and GRU size at 400
    "lstur": ("LSTUR", dict(num_filters=200, window=3, category_dim=100, variant="ini", attention_hidden=200)),
    "npa": ("NPA", dict(num_filters=400, window=3, user_dim=100, query_dim=200)),
}


def fail(message: str) -> None:
    print(f"peers.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def peer_python(venv: Path = VENV, version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Path:
    """The peer's interpreter, its environment made once (pinned); one line when impossible."""
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    if tuple(version[:2]) not in ((3, 9), (3, 10), (3, 11)):
        fail(f"the peer needs Python 3.9-3.11 for tensorflow-cpu 2.15.1, this is {'.'.join(map(str, version))}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", *PINS]]
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            last = [line for line in res.stderr.splitlines() if line.strip() and "WARNING" not in line]
            fail(f"could not install the peer ({' '.join(PINS)}): {last[-1] if last else res.returncode}")
    (venv / ".complete").touch()
    return python


def tokenize(text: str) -> list[str]:
    """The peer's own tokenizer (``newsrec_utils.word_tokenize``)."""
    return re.findall(r"[\w]+|[.,!?;|]", text.lower())


def write_peer_files(root: Path, out: Path) -> dict[str, Path]:
    """The files the peer's MIND iterator reads, from the world at ``root``: ``word_dict.pkl``
    (1-based, 0 = padding), ``embedding.npy`` (its rows; the world's vectors, zeros where none),
    ``uid2index.pkl`` (training users, 1-based; row 0 = unknown: the peer's table has
    ``len(uid2index)`` rows, so a ``<unk>`` entry takes row 0), ``vert_dict.pkl``,
    ``subvert_dict.pkl``. The news and behaviors files are the world's own (MIND format)."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    words, verts, subverts = {}, {}, {}
    for split in ("train", "dev"):
        for line in (root / split / "news.tsv").read_text(encoding="utf-8").splitlines():
            cols = line.split("\t")
            verts.setdefault(cols[1], len(verts) + 1)
            subverts.setdefault(cols[2], len(subverts) + 1)
            for w in tokenize(cols[3]) + tokenize(cols[4]):
                words.setdefault(w, len(words) + 1)
    users = {"<unk>": 0}
    for line in (root / "train" / "behaviors.tsv").read_text().splitlines():
        users.setdefault(line.split("\t")[1], len(users))
    vectors = {}
    for line in (root / "word_vectors.txt").read_text(encoding="utf-8").splitlines():
        parts = line.rstrip().split(" ")
        if len(parts) > 2:
            vectors[parts[0]] = np.asarray(parts[1:], dtype=np.float32)
    dim = len(next(iter(vectors.values())))
    emb = np.zeros((len(words) + 1, dim), np.float32)
    for w, i in words.items():
        if w in vectors:
            emb[i] = vectors[w]
    files = {name: out / name for name in ("word_dict.pkl", "uid2index.pkl", "vert_dict.pkl", "subvert_dict.pkl")}
    for name, table in zip(files, (words, users, verts, subverts)):
        with open(files[name], "wb") as f:  # the peer reads pickles: its format, not newsrec's
            pickle.dump(table, f)
    np.save(out / "embedding.npy", emb)
    files["embedding.npy"] = out / "embedding.npy"
    return files


def impression_labels(root: Path) -> list[list[int]]:
    return [
        [int(t.rsplit("-", 1)[1]) for t in line.split("\t")[4].split()]
        for line in (root / "dev" / "behaviors.tsv").read_text().splitlines()
    ]


def common_scores(labels: list[list[int]], scores: list) -> dict[str, float]:
    """One scorer for both sides, per impression: AUC (ties count half), MIND's MRR (mean of
    1/rank over every clicked news) and nDCG@10; impressions with one class are skipped for AUC."""
    import numpy as np

    aucs, mrrs, ndcgs = [], [], []
    for y, s in zip(labels, scores):
        y, s = np.asarray(y), np.asarray(s, dtype=np.float64)
        pos, neg = s[y == 1], s[y == 0]
        if len(pos) and len(neg):
            aucs.append(
                ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
            )
        order = np.argsort(-s, kind="stable")
        ranked = y[order]
        if ranked.sum():
            mrrs.append((ranked / np.arange(1, len(ranked) + 1)).sum() / ranked.sum())
            gains = (ranked[:10] / np.log2(np.arange(2, min(10, len(ranked)) + 2))).sum()
            ideal = (np.sort(y)[::-1][:10] / np.log2(np.arange(2, min(10, len(y)) + 2))).sum()
            ndcgs.append(gains / ideal)
    return {"auc": float(np.mean(aucs)), "mrr": float(np.mean(mrrs)), "ndcg@10": float(np.mean(ndcgs))}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class _FirstBatchExcluded:
    """Lightning callback: the clock starts when the first batch ends (both sides leave out their
    first step: graph tracing on the peer's side, lazy set-up on newsrec's)."""

    def __new__(cls):
        import pytorch_lightning as pl

        class Clock(pl.Callback):
            start = 0.0

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if batch_idx == 0:
                    self.start = time.perf_counter()

        return Clock()


def phase_newsrec(args) -> dict:
    import pytorch_lightning as pl
    import torch

    torch.set_num_threads(1)
    import newsrec.models as models
    from newsrec.data import MINDDataModule
    from newsrec.training import predict_scores

    pl.seed_everything(args.seed, verbose=False)
    name, hp = NEWSREC[args.model]
    dm = MINDDataModule(
        root=args.root,
        batch_size=BATCH,
        eval_batch_size=64,
        history_length=HISTORY,
        title_length=TITLE,
        abstract_length=BODY,
        num_negatives=NEGATIVES,
        seed=args.seed,
    )
    model = getattr(models, name).from_data(
        dm, word_dim=50, dropout=0.2, lr=LR, lr_schedule="constant", warmup_fraction=0.0, **hp
    )
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    clock = _FirstBatchExcluded()
    trainer = pl.Trainer(max_steps=args.batches, limit_val_batches=0, accelerator="cpu", callbacks=[clock], **quiet)
    trainer.fit(model, dm)
    train_s = time.perf_counter() - clock.start
    model.connect_data(dm, stage="predict")
    t = time.perf_counter()
    table = predict_scores(model, dm, trainer=pl.Trainer(accelerator="cpu", **quiet))
    eval_s = time.perf_counter() - t
    own = pl.Trainer(accelerator="cpu", **quiet).validate(model, dm, verbose=False)[0]
    ids, scores = table.column("impression_id").to_numpy(), table.column("score").to_numpy()
    cuts = [0, *(1 + __import__("numpy").flatnonzero(ids[1:] != ids[:-1])), len(ids)]
    per = [scores[a:b].tolist() for a, b in zip(cuts[:-1], cuts[1:])]
    n_imp = len(per)
    return {
        "train_samples_per_s": (args.batches - 1) * BATCH / train_s,
        "eval_impressions_per_s": n_imp / eval_s,
        "own": {k.split("/")[1]: float(v) for k, v in own.items() if k.split("/")[1] in ("auc", "mrr", "ndcg@10")},
        "scores": per,
        "peak_rss_gib": peak_rss_gib(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def phase_peer(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from recommenders.models.deeprec.deeprec_utils import cal_metric
    from recommenders.models.newsrec.io.mind_iterator import MINDIterator
    from recommenders.models.newsrec.newsrec_utils import prepare_hparams

    module = {"nrms": "nrms", "naml": "naml", "lstur": "lstur", "npa": "npa"}[args.model]
    cls = getattr(
        __import__(f"recommenders.models.newsrec.models.{module}", fromlist=["x"]), f"{args.model.upper()}Model"
    )
    side = Path(args.side)
    hp = prepare_hparams(
        None,
        model_type=args.model,
        title_size=TITLE,
        body_size=BODY,
        his_size=HISTORY,
        npratio=NEGATIVES,
        data_format="naml" if args.model == "naml" else "news",
        word_emb_dim=50,
        dropout=0.2,
        learning_rate=LR,
        optimizer="adam",
        loss="cross_entropy_loss",
        batch_size=BATCH,
        epochs=1,
        show_step=10**9,
        support_quick_scoring=args.model != "npa",
        metrics=["group_auc", "mean_mrr", "ndcg@5;10"],
        cnn_activation="relu",
        dense_activation="relu",
        wordEmb_file=str(side / "embedding.npy"),
        wordDict_file=str(side / "word_dict.pkl"),
        userDict_file=str(side / "uid2index.pkl"),
        vertDict_file=str(side / "vert_dict.pkl"),
        subvertDict_file=str(side / "subvert_dict.pkl"),
        vert_num=len(pickle.load(open(side / "vert_dict.pkl", "rb"))) + 1,
        subvert_num=len(pickle.load(open(side / "subvert_dict.pkl", "rb"))) + 1,
        **PEER_SIZES[args.model],
    )
    if args.model == "naml":  # NAML reads titles, bodies and categories through its own iterator
        from recommenders.models.newsrec.io.mind_all_iterator import MINDAllIterator as MINDIterator
    model = cls(hp, MINDIterator, seed=args.seed)
    root = Path(args.root)
    news, behaviors = str(root / "train" / "news.tsv"), str(root / "train" / "behaviors.tsv")
    steps, t = 0, time.perf_counter()
    for batch in model.train_iterator.load_data_from_file(news, behaviors):
        model.train(batch)
        steps += 1
        if steps == 1:  # the clock starts after the first step (graph tracing), as on newsrec's side
            t = time.perf_counter()
        if steps >= args.batches:
            break
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    dev_news, dev_beh = str(root / "dev" / "news.tsv"), str(root / "dev" / "behaviors.tsv")
    evaluate = model.run_fast_eval if hp.support_quick_scoring else model.run_slow_eval
    index, labels, preds = evaluate(dev_news, dev_beh)
    eval_s = time.perf_counter() - t
    own = cal_metric(labels, preds, hp.metrics)
    order = np.argsort(np.asarray(index), kind="stable")  # the iterator's impression index = file line
    return {
        "train_samples_per_s": (steps - 1) * BATCH / train_s,
        "eval_impressions_per_s": len(index) / eval_s,
        "own": {"auc": own["group_auc"], "mrr": own["mean_mrr"], "ndcg@10": own["ndcg@10"]},
        "scores": [np.asarray(preds[i]).tolist() for i in order],
        "peak_rss_gib": peak_rss_gib(),
        "parameters": int(sum(np.prod(w.shape) for w in model.model.trainable_weights)),
    }


def run_side(python: Path, args, side: str, model: str, seed: int) -> dict:
    cmd = [
        str(python),
        __file__,
        "--phase",
        side,
        "--model",
        model,
        "--seed",
        str(seed),
        "--root",
        str(args.root),
        "--side",
        str(args.side),
        "--batches",
        str(args.batches),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        tail = [line for line in res.stderr.splitlines() if line.strip()]
        return {"error": tail[-1][:300] if tail else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", choices=["newsrec", "peer"])
    p.add_argument("--model", default="nrms")
    p.add_argument("--models", default="nrms,naml,lstur,npa")
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--news", type=int, default=600)
    p.add_argument("--seeds", default="0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--root")
    p.add_argument("--side")
    args = p.parse_args()
    if args.phase:
        print(json.dumps((phase_newsrec if args.phase == "newsrec" else phase_peer)(args)))
        return
    python = peer_python()
    sys.path.insert(0, str(HERE))
    from _common import machine

    from newsrec.data import generate_mind

    args.root = CACHE / f"world-{args.users}-{args.news}"
    if not (args.root / "dev" / "behaviors.tsv").exists():
        generate_mind(args.root, num_users=args.users, num_news=args.news, seed=0, word_dim=50)
    args.side = args.root / "peer"
    write_peer_files(args.root, args.side)
    labels = impression_labels(args.root)
    print(f"machine: {machine()}; one thread per side; {args.batches} training batches of {BATCH}")
    print(f"world: {args.users} users, {args.news} news, {len(labels)} dev impressions")
    head = "model  seed  side     train/s  eval imp/s  peak GiB  params     AUC    MRR  nDCG@10 | own AUC  MRR  nDCG@10"
    print(head)
    for model in args.models.split(","):
        for seed in map(int, args.seeds.split(",")):
            rows = {}
            for side in ("newsrec", "peer"):  # alternately, one process each
                rows[side] = r = run_side(sys.executable if side == "newsrec" else python, args, side, model, seed)
                if "error" in r:
                    print(f"{model:<6}{seed:>4}  {side:<8} failed: {r['error']}")
                    continue
                c = common_scores(labels, r.pop("scores"))
                r["common"] = c
                o = r["own"]
                print(
                    f"{model:<6}{seed:>4}  {side:<8}{r['train_samples_per_s']:>8.1f}"
                    f"{r['eval_impressions_per_s']:>12.1f}"
                    f"{r['peak_rss_gib']:>10.3f}{r['parameters']:>9d}  {c['auc']:.4f} {c['mrr']:.4f} {c['ndcg@10']:.4f}"
                    f" | {o['auc']:.4f} {o['mrr']:.4f} {o['ndcg@10']:.4f}"
                )
            if all("error" not in r for r in rows.values()):
                a, b = rows["newsrec"], rows["peer"]
                print(
                    f"{model:<6}{seed:>4}  ratio   {a['train_samples_per_s'] / b['train_samples_per_s']:>8.2f}x"
                    f"{a['eval_impressions_per_s'] / b['eval_impressions_per_s']:>11.2f}x"
                    f"{a['peak_rss_gib'] / b['peak_rss_gib']:>9.2f}x"
                    f"   AUC newsrec - peer {a['common']['auc'] - b['common']['auc']:+.4f}"
                )


if __name__ == "__main__":
    main()
