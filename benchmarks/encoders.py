"""Encoder benchmark: forward and forward+backward time at the papers' sizes, and Fastformer
against standard self-attention as the sequence grows.

    python benchmarks/encoders.py [--quick] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, table  # noqa: E402

from newsrec.nn import (  # noqa: E402
    AdditiveAttention,
    Fastformer,
    GatedGraphEncoder,
    MultiHeadSelfAttention,
    TextEncoder,
    UserEncoder,
    build_graph_encoder,
)


class _Pruned(torch.nn.Module):
    """The GGNN asked only for ``output_nodes`` (as GLORY asks for the history nodes)."""

    def __init__(self, encoder, output_nodes):
        super().__init__()
        self.encoder, self.output_nodes = encoder, output_nodes

    def forward(self, x, edge_index):
        return self.encoder(x, edge_index, output_nodes=self.output_nodes.to(x.device))[self.output_nodes]


class _PyGGatedGraphConv(torch.nn.Module):
    """``torch_geometric.nn.GatedGraphConv``, the previous full-graph path, for the side-by-side row."""

    def __init__(self, dim, layers):
        super().__init__()
        from torch_geometric.nn import GatedGraphConv

        self.conv = GatedGraphConv(dim, layers)

    def forward(self, x, edge_index):
        return self.conv(x, edge_index)


def bench(fn, repeat: int, device: str) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1000


def run(module, inputs, repeat, device):
    module = module.to(device)
    inputs = [x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs]
    with torch.no_grad():
        fwd = bench(lambda: module(*inputs), repeat, device)

    def step():
        out = module(*inputs)
        out.float().sum().backward()

    return fwd, bench(step, repeat, device)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev, rep = a.device, (2 if a.quick else 5)
    B, H, L, D = (4, 10, 30, 400) if a.quick else (32, 50, 30, 400)
    torch.manual_seed(0)
    rows = []
    emb = torch.nn.Embedding(30000, 300, padding_idx=0)
    tokens = torch.randint(1, 30000, (B * H, L))
    tokens[:, 20:] = 0
    mask = tokens != 0
    x300 = emb(tokens).detach()
    news = torch.randn(B, H, D)
    hmask = torch.ones(B, H, dtype=torch.bool)
    cases = [
        (
            f"MultiHeadSelfAttention 20x20 on {B}x{H} titles x {L} words",
            MultiHeadSelfAttention(300, 20, 20),
            [x300, mask],
        ),
        (f"AdditiveAttention on {B * H} x {L} x {D}", AdditiveAttention(D, 200), [torch.randn(B * H, L, D), mask]),
        (f"TextEncoder (title) on {B * H} titles", TextEncoder(emb, 20, 20, 200, 0.2), [tokens]),
        (f"UserEncoder on {B} users x {H} news", UserEncoder(D, 20, 20, 200), [news, hmask]),
    ]
    G = 4 if a.quick else 4 * 30  # FUM: 50 clicks x 4 genres x 30 tokens
    seq = torch.randn(B, H * G, 120)
    cases.append(
        (f"Fastformer 3x40 on {B} users x {H * G} tokens (FUM, 50 x 4 genres x 30)", Fastformer(120, 3), [seq])
    )
    n_nodes, n_edges = (2000, 20000) if a.quick else (20000, 160000)
    ei = torch.randint(0, n_nodes, (2, n_edges))
    ggnn = GatedGraphEncoder(D, D, 3)
    xs = torch.randn(n_nodes, D)
    cases.append((f"GatedGraphEncoder 3 layers, {n_nodes} nodes / {n_edges} edges (edge_index)", ggnn, [xs, ei]))
    # before/after the own MessagePassing GGNN: PyG's GatedGraphConv beside it, same graph
    cases.append(
        (f"PyG GatedGraphConv 3 layers, {n_nodes} nodes / {n_edges} edges", _PyGGatedGraphConv(D, 3), [xs, ei])
    )
    outputs = torch.randperm(n_nodes)[: n_nodes // 20]
    cases.append((f"GatedGraphEncoder pruned to {len(outputs)} output nodes", _Pruned(ggnn, outputs), [xs, ei]))
    for kind in ("gcn", "gat", "sage", "gin"):  # GLORY's alternative graph encoders
        cases.append((f"{kind} 3 layers, {n_nodes} nodes / {n_edges} edges", build_graph_encoder(kind, D, 3), [xs, ei]))
    for name, module, inputs in cases:
        fwd, step = run(module, inputs, rep, dev)
        rows.append({"encoder": name, "forward ms": fwd, "forward+backward ms": step})
    print(f"machine: {machine()}; device {dev}")
    print(table(rows, ["encoder", "forward ms", "forward+backward ms"]))

    rows = []
    lengths = [256, 512, 1024] if a.quick else [800, 1600, 3200, 6400]  # FUM: L = 1,600 and 4x
    batch = 2 if a.quick else 8
    for n in lengths:
        x = torch.randn(batch, n, 120)
        ff, _ = run(Fastformer(120, 3), [x], rep, dev)
        mh, _ = run(MultiHeadSelfAttention(120, 3, 40), [x], rep, dev)
        rows.append({"tokens": n, "Fastformer ms": ff, "MHSA ms": mh, "MHSA / Fastformer": mh / ff})
    print(f"\nFastformer vs standard self-attention (FUM's Figure 4), batch {batch}, 120-d, 3 heads (forward):")
    print(table(rows, ["tokens", "Fastformer ms", "MHSA ms", "MHSA / Fastformer"]))


if __name__ == "__main__":
    main()
