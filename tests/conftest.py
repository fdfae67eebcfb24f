import os

import pytest
import torch

os.environ.setdefault("NEWSREC_PROGRESS", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny synthetic MIND world shared by the tests (read-only: copy before changing)."""
    from newsrec.data import generate_mind

    return generate_mind(tmp_path_factory.mktemp("world") / "mind", num_users=120, num_news=200, seed=3)
