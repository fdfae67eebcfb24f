"""Training and evaluation speed of NRMS and GLORY (the GLORY issue's benchmark): samples/s,
evaluation impressions/s including the encode-every-news pass, the data share of a step and
the achieved FLOP/s against ``torch.matmul``. A thin entry point to ``efficiency.py`` with
GLORY's models selected; every option of that script applies.

    python benchmarks/train_eval.py [--threads 2] [--device cpu|cuda] [--bf16]
        [--knob popularity_sigma=2.0]   # MIND-like click skew: the official code's subgraph sizes
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

if __name__ == "__main__":
    import efficiency

    if "--models" not in sys.argv:
        sys.argv += ["--models", "NRMS", "GLORY", "GLORY (sampled edges)", "GLORY (approximate)"]
    efficiency.main()
