"""The ``newsrec`` command.

``newsrec fit | validate | test | predict --config configs/glory_demo.yaml`` train and evaluate
(Lightning's CLI, see :mod:`newsrec.lightning_cli`). ``newsrec synth --out DIR`` writes a
synthetic MIND world; ``newsrec prepare ROOT`` builds the cached corpus and behaviors;
``newsrec convert ebnerd|adressa SRC OUT`` writes a MIND-format root from EB-NeRD or
Adressa; ``newsrec baselines ROOT`` prints the popularity, click-transition and item-kNN baselines and
(for synthetic worlds) the oracle on the dev split; ``newsrec demo`` does all three on a small
world. ``--threads N`` (anywhere on the line, every command) or ``NEWSREC_THREADS=N`` sets
torch's CPU threads. Errors in input files are reported as one line and a non-zero exit code (``--debug``,
``--verbose`` or ``NEWSREC_DEBUG=1`` show the traceback).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pickle
import sys
from pathlib import Path

from newsrec.utils import format_table

__all__ = ["main", "format_table"]


def _synth(args: argparse.Namespace) -> None:
    from newsrec.data import generate_mind
    from newsrec.data.synthetic import check_knobs

    try:
        knobs = json.loads(args.knobs) if args.knobs else {}
    except json.JSONDecodeError as e:
        raise ValueError(
            f"--knobs is not JSON ({e}): give an object such as '{{\"transition_strength\": 0}}'"
        ) from None
    knobs = check_knobs(knobs, reserved=("num_users", "num_news", "seed"))  # those are --users, --news, --seed
    path = generate_mind(
        args.out, num_users=args.users, num_news=args.news, seed=args.seed, show_progress=True, **knobs
    )
    world = json.loads((Path(path) / "world.json").read_text())
    print(
        f"wrote {path}: {world['train_impressions']} train / {world['dev_impressions']} dev impressions, "
        f"oracle dev AUC {world['dev_oracle_auc']:.4f}"
    )


def _prepare(args: argparse.Namespace) -> None:
    import numpy as np

    from newsrec.data.prepare import missing_vector_notes, prepare

    out = prepare(args.root, missing=args.missing)
    print(out["corpus"])
    for note in missing_vector_notes(args.root):
        print(f"note: {note}")
    for split, b in out.items():
        if split != "corpus":
            users = len(np.unique(b.users)) if len(b) else 0
            extra = len(b.user_ids) - users
            why = f" (and {extra} users whose impressions were all dropped)" if extra else ""
            print(f"{split}: {len(b)} impressions, {users} users{why}, {len(b.history)} history clicks")


def _baselines(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    import dataclasses

    import numpy as np

    from newsrec.baselines import (
        evaluate_scores,
        item_knn_scores,
        popularity_scores,
        read_oracle,
        recency_popularity_scores,
        transition_scores,
    )
    from newsrec.data.freshness import fresh_impressions, fresh_news
    from newsrec.data.prepare import prepare

    data = prepare(args.root, show_progress=False)
    corpus, train, dev = data["corpus"], data["train"], data.get("dev")
    if dev is None:
        raise SystemExit(f"{args.root} has no dev split to evaluate on")
    # fresh: the impressions whose clicked news had no training click (newsrec.data.freshness)
    fresh = fresh_impressions(
        dev.candidates, dev.candidate_offsets, dev.labels, fresh_news(train.click_counts(len(corpus)))
    )
    keep = np.repeat(fresh, dev.num_candidates)  # the fresh impressions alone
    sub = dataclasses.replace(
        dev, impression_ids=dev.impression_ids[fresh], users=dev.users[fresh], times=dev.times[fresh],
        history_offsets=np.zeros(int(fresh.sum()) + 1, np.int64), history=np.zeros(0, np.int64),
        candidates=dev.candidates[keep], labels=dev.labels[keep],
        candidate_offsets=np.concatenate([[0], np.cumsum(dev.num_candidates[fresh])]).astype(np.int64),
    )  # fmt: skip

    def both(scores) -> dict[str, float]:
        flat = scores if isinstance(scores, np.ndarray) else [s for s, f in zip(scores, fresh) if f]
        out = evaluate_scores(dev, scores)
        return out | {f"fresh_{k}": evaluate_scores(sub, flat)[k] for k in ("auc", "ndcg@10")} if fresh.any() else out

    rows = {"popularity": both(popularity_scores(train, len(corpus)))}
    # MIND has no publish time: a news' first impression stands for it (newsrec.baselines.first_seen_times)
    rows["recency_popularity"] = both(recency_popularity_scores(train, dev, len(corpus)))
    rows["transition"] = both(transition_scores(train, dev, len(corpus)))
    rows["item_knn"] = both(item_knn_scores(train, dev, len(corpus)))
    oracle = Path(args.root) / "dev" / "oracle.tsv"
    if oracle.exists():
        rows["oracle"] = both(read_oracle(oracle))
    print(format_table(rows))
    print(f"\nfresh: the {int(fresh.sum())} of {len(dev)} impressions whose clicked news had no training click")
    for name, row in rows.items():
        if "fresh_auc" in row:
            print(f"{name:<20}  fresh auc {row['fresh_auc']:.4f}  fresh ndcg@10 {row['fresh_ndcg@10']:.4f}")
    return rows


def _serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from newsrec.serving.app import ServiceLimits, create_app
    except ImportError:
        raise SystemExit("newsrec serve needs fastapi and uvicorn: pip install 'newsrec-pyg[serve]'") from None
    from newsrec.serving import Recommender
    from newsrec.serving.store import checked_interval, parse_duration

    checked_interval(args.follow_seconds, "--follow_seconds")  # before the model loads: one line
    checked_interval(args.entity_refresh_seconds, "--entity_refresh_seconds")
    rec = Recommender.from_checkpoint(
        args.ckpt_path,
        root=args.root,
        device=args.device,
        search=args.search,
        index_dir=None if args.index_dir == "none" else args.index_dir,
        store=None if args.store == "none" else args.store,
        edge_half_life=None if args.edge_half_life in (None, "none") else parse_duration(args.edge_half_life),
        follow_seconds=args.follow_seconds,
        entity_refresh_seconds=args.entity_refresh_seconds,
    )
    limits = ServiceLimits(max_k=args.max_k, max_history=args.max_history, max_candidates=args.max_candidates)
    store = "no click store" if rec.store is None else f"clicks in {rec.store.kind} ({rec.click_info['clicks']} stored)"
    print(
        f"serving {type(rec.model).__name__} over {rec.num_news} news on http://{args.host}:{args.port} "
        f"(docs: /docs; {store})"
    )
    uvicorn.run(create_app(rec, limits), host=args.host, port=args.port, log_level=args.log_level)


def _convert(args: argparse.Namespace) -> None:
    if args.dataset == "ebnerd":
        from newsrec.data.ebnerd import convert_ebnerd

        report = convert_ebnerd(args.src, args.out, missing=args.missing, show_progress=True)
    else:
        from newsrec.data.adressa import convert_adressa

        days = {}
        if args.split:
            try:
                days = dict(zip(("history_days", "train_days", "dev_days"), map(int, args.split.split(","))))
            except ValueError:
                days = {}
            if len(days) != 3:
                raise ValueError(f"--split must be three day counts HISTORY,TRAIN,DEV (e.g. 5,1,1), got {args.split!r}")
        report = convert_adressa(
            args.src,
            args.out,
            variant=args.variant,
            seed=args.seed,
            num_negatives=args.negatives,
            show_progress=True,
            **days,
        )
    print(f"wrote a MIND-format root at {args.out}")
    for line in report.lines():
        print(f"  {line}")


def _demo(args: argparse.Namespace) -> None:
    root = Path(args.root)
    if not (root / "train" / "behaviors.tsv").exists():
        args.out, args.users, args.news, args.seed, args.knobs = root, 2000, 2000, 0, None
        _synth(args)
    _baselines(args)


THREADS_HELP = "torch's CPU threads for every command (also NEWSREC_THREADS; anywhere on the line)"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # the whole line's options, in every command's --help
    common.add_argument("--verbose", "--debug", action="store_true", help="show tracebacks (also NEWSREC_DEBUG=1)")
    common.add_argument("--threads", type=int, help=THREADS_HELP)
    parser = argparse.ArgumentParser(prog="newsrec", description=__doc__.split("\n\n")[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    add_command = functools.partial(sub.add_parser, parents=[common])
    p = add_command("synth", help="write a synthetic MIND world")
    p.add_argument("--out", required=True)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--news", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--knobs", help="JSON of SyntheticConfig fields, e.g. '{\"transition_strength\": 0}'")
    p.set_defaults(func=_synth)
    p = add_command("prepare", help="build the cached corpus and behaviors of a MIND root")
    p.add_argument("root")
    p.add_argument("--missing", choices=["error", "drop"], default="error")
    p.set_defaults(func=_prepare)
    p = add_command(
        "baselines",
        help="popularity, recency-weighted popularity, transition, item-kNN and oracle metrics on the dev split "
        "(and on its fresh impressions: the clicked news had no training click)",
    )
    p.add_argument("root")
    p.set_defaults(func=_baselines)
    p = add_command("serve", help="serve a trained model over HTTP (extra [serve]: fastapi + uvicorn)")
    p.add_argument("--ckpt_path", required=True, help="a checkpoint written by newsrec fit")
    p.add_argument("--root", help="the MIND root (default: the one recorded at training)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--search", choices=["exact", "faiss"], default="exact", help="faiss: approximate, for ~1M news")
    p.add_argument(
        "--index_dir", default="auto", help="where the news index persists (auto: ROOT/processed/serving; none)"
    )
    p.add_argument(
        "--store",
        default="auto",
        help="where clicks and articles are kept: auto (SQLite beside the news index), a .sqlite path, "
        "postgresql://… (several processes), or none",
    )
    p.add_argument("--edge_half_life", help="live graph edges halve their weight every e.g. 6h, 30m, 3600 (seconds)")
    p.add_argument(
        "--follow_seconds",
        type=float,
        help="read other processes' clicks from the store this often (default: 1 with postgresql://, else off)",
    )
    p.add_argument(
        "--entity_refresh_seconds",
        type=float,
        default=60.0,
        help="re-encode the news whose entities' live graph neighbours changed this often (0: at every write)",
    )
    p.add_argument("--max_k", type=int, default=1000)
    p.add_argument("--max_history", type=int, default=1000)
    p.add_argument("--max_candidates", type=int, default=10_000)
    p.add_argument("--log_level", default="info")
    p.set_defaults(func=_serve)
    p = add_command("convert", help="convert EB-NeRD or Adressa into a MIND-format root")
    p.add_argument("dataset", choices=["ebnerd", "adressa"])
    p.add_argument("src", help="the download as distributed (EB-NeRD: its folder; Adressa: the tar.gz or its folder)")
    p.add_argument("out", help="the MIND-format root to write (train/, dev/[, test/])")
    p.add_argument("--missing", choices=["error", "drop"], default="error", help="EB-NeRD: unknown article ids")
    p.add_argument("--variant", choices=["one_week", "three_month"], default="one_week", help="Adressa")
    p.add_argument("--seed", type=int, default=0, help="Adressa: the negative sampling's seed")
    p.add_argument("--negatives", type=int, default=20, help="Adressa: non-clicked candidates per impression")
    p.add_argument("--split", help="Adressa: days of history, train and dev, e.g. 5,1,1 (default: the variant's)")
    p.set_defaults(func=_convert)
    p = add_command("demo", help="generate a small synthetic world (once) and evaluate baselines on it")
    p.add_argument("--root", default="data/synthetic-demo")
    p.set_defaults(func=_demo)
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # --debug / --verbose (anywhere on the line) or NEWSREC_DEBUG=1: show tracebacks
    verbose = "--verbose" in argv or "--debug" in argv or os.environ.get("NEWSREC_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a not in ("--verbose", "--debug")]
    try:  # --threads N (anywhere on the line) or NEWSREC_THREADS: torch's CPU threads, every command
        argv = _apply_threads(argv)
    except ValueError as e:
        print(f"newsrec: error: {e}", file=sys.stderr)
        return 1
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from newsrec.lightning_cli import run_lightning_cli

        def run() -> None:
            run_lightning_cli(None if argv == sys.argv[1:] else argv)
    else:
        args = build_parser().parse_args(argv)

        def run() -> None:
            args.func(args)

    try:
        run()
    except (ValueError, FileNotFoundError, OSError) as e:  # bad input: one line, exit code 1
        if verbose:
            raise
        print(f"newsrec: error: {useful_message(str(e))}", file=sys.stderr)
        return 1
    except pickle.UnpicklingError as e:  # a checkpoint that weights_only loading refuses
        if verbose:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(
            "newsrec: error: a checkpoint holds objects that safe (weights_only) loading refuses "
            f"({first[:200]}); load only checkpoints written by newsrec or that you trust "
            "(--debug shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


def _apply_threads(argv: list[str]) -> list[str]:
    """Take ``--threads N`` / ``--threads=N`` out of ``argv`` and set torch's CPU threads to N
    (else to ``NEWSREC_THREADS`` when set); returns the rest of the line."""
    from newsrec.training.quiet import apply_threads

    rest, threads, i = [], None, 0
    while i < len(argv):
        if argv[i] == "--threads":
            if i + 1 >= len(argv):
                raise ValueError("--threads needs a number of CPU threads, e.g. --threads 4")
            threads, i = argv[i + 1], i + 2
            continue
        if argv[i].startswith("--threads="):
            threads = argv[i].split("=", 1)[1]
        else:
            rest.append(argv[i])
        i += 1
    apply_threads(threads)
    return rest


def useful_message(message: str) -> str:
    """The sentence that matters of an error: jsonargparse reports a model that failed to build
    as a union-subtype report with the whole resolved namespace (kilobytes on one line); the
    useful sentence is the model's own error inside it."""
    if "Does not validate against any of the Union subtypes" not in message:
        return message
    reasons = [
        line.strip()[2:]
        for line in message.splitlines()
        if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line
    ]
    return reasons[0] if reasons else message.splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
