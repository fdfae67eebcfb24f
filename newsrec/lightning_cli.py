"""``newsrec fit | validate | test | predict``: Lightning's CLI over newsrec's models and data.

Configs are YAML (see ``configs/``); any value can be overridden on the command line
(``--model.init_args.lr 1e-4``, ``--trainer.max_epochs 3``). Note that a config may name any
importable class to instantiate (``class_path``): a config file is code, so only run configs you
trust.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from pytorch_lightning.cli import LightningCLI

from newsrec.checkpoint_io import (
    AtomicCheckpointIO,
    BestCheckpoint,
    LastCheckpoint,
    check_checkpoint_fits,
    find_last_checkpoint,
    read_checkpoint,
)
from newsrec.data.datamodule import MINDDataModule
from newsrec.models.base import NewsRecModel
from newsrec.training import (
    PredictionFileWriter,
    ScoresFileWriter,
    apply_threads,
    quiet_dependency_notices,
    training_callbacks,
)
from newsrec.utils import format_table

__all__ = ["NewsRecCLI", "PredictionFileWriter", "run_lightning_cli"]


#: the files only ``predict`` writes, with their defaults (``validate`` / ``test`` refuse any other value)
PREDICT_OUTPUTS = {"prediction_file": "prediction.zip", "scores_file": None, "submission_file": None}


class NewsRecCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in NewsRecModel.data_size_arguments:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="torch's CPU threads (also NEWSREC_THREADS; on the command line it may stand anywhere)",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=0,
            help="also write last.ckpt every N optimiser steps (default 0: after every epoch only)",
        )
        parser.add_argument(
            "--prediction_file",
            default=PREDICT_OUTPUTS["prediction_file"],
            help="where `predict` writes the leaderboard file (.zip or .txt)",
        )
        parser.add_argument(
            "--scores_file",
            default=None,
            help="`predict` also writes every candidate's score here (parquet: impression_id, user_id, news_id, "
            "position, score, label where the split has labels)",
        )
        parser.add_argument(
            "--submission_file",
            default=None,
            help="`predict` also writes the EB-NeRD challenge submission here (predictions.txt in a .zip)",
        )

    def parse_arguments(self, parser, args) -> None:
        """Lightning's parsing, then, before Lightning reads the hyper-parameters of a
        ``--ckpt_path`` file into the config: the file must be a readable checkpoint of the
        config's model class (a GLORY checkpoint must not turn an NRMS config into GLORY)."""
        super().parse_arguments(parser, args)
        command = self.config.get("subcommand")
        config = self.config.get(command) if command else None
        path = config.get("ckpt_path") if config is not None else None
        if path and path not in ("best", "last", "hpc", "registry") and Path(path).is_file():
            ckpt = read_checkpoint(path, mmap=True)
            named = ckpt.get("newsrec_model") or (ckpt.get("hyper_parameters") or {}).get("_class_path")
            wanted = str((config.get("model") or {}).get("class_path") or "")
            if named and wanted and named.rpartition(".")[2] != wanted.rpartition(".")[2]:
                raise ValueError(
                    f"{path} holds a {named.rpartition('.')[2]} model, but the config builds a "
                    f"{wanted.rpartition('.')[2]}: use the config the checkpoint was trained with"
                )
        elif path and path not in ("best", "last", "hpc", "registry"):
            raise FileNotFoundError(f"no checkpoint at {path}")

    def before_instantiate_classes(self) -> None:
        """``threads:`` from a config file (``--threads`` on the line was applied before parsing)."""
        config = self.config[self.subcommand] if self.subcommand else self.config  # run=False: no subcommand
        threads = config.get("threads")
        if threads is not None:
            apply_threads(threads)

    def _refuse_predict_outputs(self) -> None:
        """``validate`` and ``test`` write no files: a ``--scores_file``, ``--submission_file`` or
        ``--prediction_file`` given to them is one clear error, not silently ignored."""
        config = self.config[self.subcommand]
        given = [f"--{name}" for name, default in PREDICT_OUTPUTS.items() if config.get(name) not in (None, default)]
        if given:
            raise ValueError(
                f"newsrec {self.subcommand} writes no files; {', '.join(given)} is for `newsrec predict` "
                "(run predict with the same config and checkpoint)"
            )

    def _connect(self, stage: str) -> None:
        """The model ↔ data handshake (:meth:`NewsRecModel.connect_data`), before every command."""
        if hasattr(self.model, "connect_data") and hasattr(self.datamodule, "model_inputs"):
            self.model.connect_data(self.datamodule, stage=stage)

    def _resolve_last(self) -> None:
        """``--ckpt_path last``: the newest ``last.ckpt`` of the run, anywhere under the trainer's
        ``default_root_dir`` (every ``version_N`` folder) or a checkpoint callback's folder.
        Lightning's own ``last`` looks only in the new, empty version folder of this invocation."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        folders = [self.trainer.default_root_dir]
        folders += [getattr(c, "dirpath", None) for c in self.trainer.checkpoint_callbacks]
        found = find_last_checkpoint(*folders)
        if self.trainer.is_global_zero:
            where = ", ".join(dict.fromkeys(str(f) for f in folders if f))
            print(f"newsrec {self.subcommand}: " + (f"resuming from {found}" if found else
                  f"no last.ckpt under {where}: starting from the beginning"))  # fmt: skip
        config["ckpt_path"] = None if found is None else str(found)

    def _check_checkpoint(self) -> None:
        """A checkpoint given by path must be a readable checkpoint of this config's model,
        trained on this data (:func:`~newsrec.checkpoint_io.check_checkpoint_fits`)."""
        path = self.config_init[self.subcommand].get("ckpt_path")
        if path and path not in ("best", "last", "hpc", "registry"):
            check_checkpoint_fits(path, self.model, self.datamodule)

    def before_fit(self) -> None:
        self._connect("fit")
        every = int(self.config_init[self.subcommand].get("checkpoint_every_n_steps") or 0)
        if every < 0:
            raise SystemExit(f"--checkpoint_every_n_steps must be >= 0, got {every}")
        for callback in self.trainer.callbacks:
            if isinstance(callback, LastCheckpoint) and every:
                callback.every_n_train_steps = every
        self._resolve_last()
        self._check_checkpoint()

    def before_validate(self) -> None:
        self._refuse_predict_outputs()
        self._connect("validate")
        self._resolve_last()
        self._check_checkpoint()

    def before_predict(self) -> None:
        self._connect("predict")
        self._resolve_last()
        self._check_checkpoint()
        path = self.config[self.subcommand].get("prediction_file", PREDICT_OUTPUTS["prediction_file"])
        submission = self.config[self.subcommand].get("submission_file")
        self.trainer.callbacks.append(PredictionFileWriter(path, submission))
        scores = self.config[self.subcommand].get("scores_file")
        if scores:
            self.trainer.callbacks.append(ScoresFileWriter(scores))

    def before_test(self) -> None:
        """Connect the model to its data, and say which split ``test`` evaluates when it is not
        ``test/`` (the default is dev)."""
        self._refuse_predict_outputs()
        self._connect("test")
        self._resolve_last()
        self._check_checkpoint()
        dm = self.datamodule
        split = getattr(dm, "splits", {}).get("test")
        if split is not None and split != "test" and self.trainer.is_global_zero:
            has_test = (Path(dm.root) / "test" / "behaviors.tsv").exists()
            hint = "pass --data.test_split test to use it" if has_test else f"{dm.root} has no test/ split"
            print(f"newsrec test: evaluating the {split!r} split (data.test_split; {hint})")

    def _reference_rows(self) -> dict[str, dict[str, float]]:
        """Popularity (and, for a synthetic world, the oracle) on the validation split, printed
        under the model so that its figures mean something."""
        dm = self.datamodule
        split = getattr(dm, "splits", {}).get("validate")
        if split is None or not hasattr(dm, "behaviors"):
            return {}
        from newsrec.baselines import evaluate_scores, popularity_scores, read_oracle

        b = dm.behaviors(split)
        if not b.has_labels or not len(b):
            return {}
        rows = {"popularity": evaluate_scores(b, popularity_scores(dm.behaviors("train"), len(dm.corpus)))}
        oracle = Path(dm.root) / split / "oracle.tsv"
        if oracle.exists() and not b.num_missing:
            rows["oracle"] = evaluate_scores(b, read_oracle(oracle))
        return rows

    def after_fit(self) -> None:
        ckpt = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
        if self.trainer.limit_val_batches == 0:
            return
        loggers = self.trainer.loggers
        self.trainer.loggers = []  # the fit already logged this validation: no duplicate rows
        try:
            results = self.trainer.validate(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
        finally:
            self.trainer.loggers = loggers
        if results and self.trainer.is_global_zero:
            from newsrec.data.prepare import drop_note

            row = {k.split("/", 1)[1]: v for k, v in results[0].items() if k.startswith("val/")}
            print(f"\nvalidation metrics ({'best checkpoint' if ckpt else 'final model'}):")
            print(format_table({type(self.model).__name__: row, **self._reference_rows()}))
            split = getattr(self.datamodule, "splits", {}).get("validate")
            if split is not None and hasattr(self.datamodule, "behaviors"):
                b = self.datamodule.behaviors(split)
                if b.num_missing:
                    print(f"note: {drop_note(split, b)}")


#: Lightning / jsonargparse notices that say nothing about the user's run (hidden by default;
#: NEWSREC_DEBUG=1 shows them)
_QUIET_MESSAGES = (
    r"(?s)\s*Unable to serialize instance.*",  # jsonargparse on the CLI's own checkpoint plugin
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*`tensorboardX` has been removed.*",
    r".*log_every_n_steps.*",
    r".*No seed found, seed set to.*",
    r".*does not have many workers.*",
    r".*configured with multiple `ModelCheckpoint` callbacks.*",  # the first is newsrec's best
    r"(?s).*The dirpath has changed from.*",  # a resume logs to a new version: BestCheckpoint keeps the best
    r".*skip_none parameter was deprecated.*",
)
_QUIET_LOG_PREFIXES = ("GPU available", "TPU available", "HPU available", "💡 Tip", "Loading `train_dataloader`")


class _QuietNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_QUIET_LOG_PREFIXES)


def _quiet_defaults() -> None:
    if os.environ.get("NEWSREC_DEBUG", "") not in ("", "0"):
        return
    quiet_dependency_notices()
    for pattern in _QUIET_MESSAGES:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero", "lightning_fabric"):
        logging.getLogger(name).addFilter(_QuietNotices())


def run_lightning_cli(args: list[str] | None = None) -> None:
    """Run Lightning's CLI (``args`` = the command line after ``newsrec``; ``None`` = sys.argv)."""
    _quiet_defaults()
    NewsRecCLI(
        NewsRecModel,
        MINDDataModule,
        subclass_mode_model=True,
        args=args,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "use_distributed_sampler": False,  # newsrec shards its own batches without padding
            "plugins": [AtomicCheckpointIO()],
            # the best checkpoint by validation AUC, and last.ckpt = the latest state (every epoch,
            # and every --checkpoint_every_n_steps): ModelCheckpoint's own save_last lags behind
            # when the monitored value does not improve
            "callbacks": [
                BestCheckpoint(monitor="val/auc", mode="max", filename="best-{epoch}-{step}"),
                LastCheckpoint(),
                *training_callbacks(),  # exact resumes, clean DDP teardown
            ],
        },
        parser_kwargs={"default_env": False},
    )
