"""Worker for test_reliability's kill-and-resume test (run as a subprocess).

    python _resume_worker.py ROOT OUTDIR EPOCHS [--resume] [--die-after N]

Trains NRMS deterministically, checkpointing at every epoch end (last.ckpt); with --die-after
it SIGKILLs itself after N training batches; writes the final weights to OUTDIR/final.pt.
"""

import os
import signal
import sys

import pytorch_lightning as pl
import torch

from newsrec.data import MINDDataModule
from newsrec.models import NRMS
from newsrec.training import training_callbacks


class Die(pl.Callback):
    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.seen += 1
        if self.seen == self.after:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    root, out, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    resume = "--resume" in sys.argv
    die = int(sys.argv[sys.argv.index("--die-after") + 1]) if "--die-after" in sys.argv else None
    torch.set_num_threads(1)
    pl.seed_everything(7, workers=True)
    dm = MINDDataModule(root, batch_size=8, seed=3)
    model = NRMS(num_words=dm.num_words, word_dim=50, num_heads=2, head_dim=8, attention_hidden=8, lr=3e-3)
    callbacks = [pl.callbacks.ModelCheckpoint(dirpath=out, save_last=True), *training_callbacks()]
    if die:
        callbacks.append(Die(die))
    trainer = pl.Trainer(
        max_epochs=epochs,
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=callbacks,
        default_root_dir=out,
        accelerator="cpu",
    )
    trainer.fit(model.connect_data(dm), dm, ckpt_path="last" if resume else None)
    torch.save(model.state_dict(), os.path.join(out, "final.pt"))


if __name__ == "__main__":
    main()


class KillAtStep(pl.Callback):
    """SIGKILL this process once training reaches global step ``step`` (for the CLI resume
    test; the step's own checkpoints, written after this callback, are lost with it)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
