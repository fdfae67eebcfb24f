"""Graph encoders for GLORY's global news graph: a gated graph neural network written on PyG's
:class:`~torch_geometric.nn.conv.MessagePassing` (the paper's), and GCN / GAT / GraphSAGE / GIN
stacks from :mod:`torch_geometric.nn` for the comparison of graph encoders."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.inits import uniform
from torch_geometric.nn.models import GAT, GCN, GIN, GraphSAGE

from newsrec.utils import renamed_arguments

__all__ = [
    "GRAPH_ENCODERS",
    "GatedGraphConvolution",
    "GatedGraphEncoder",
    "MessagePassingEncoder",
    "build_graph_encoder",
    "check_graph_encoder",
]

#: graph encoder names :func:`build_graph_encoder` accepts (``ggnn`` is GLORY's)
GRAPH_ENCODERS = ("ggnn", "gcn", "gat", "sage", "gin")


def _positions(index: Tensor, num_nodes: int) -> Tensor:
    """long ``[num_nodes]``: each node's position in ``index`` (a subset of the nodes), -1 for
    the nodes not in it."""
    out = torch.full((num_nodes,), -1, dtype=torch.long, device=index.device)
    out[index] = torch.arange(index.numel(), device=index.device)
    return out


class GatedGraphConvolution(MessagePassing):
    r"""The gated graph convolution (Li et al., 2016), on PyG's public
    :class:`~torch_geometric.nn.conv.MessagePassing` API:

    .. math::
        \mathbf{h}_i^{(0)} = \mathbf{x}_i \,\Vert\, \mathbf{0}, \qquad
        \mathbf{m}_i^{(l)} = \sum_{j \in \mathcal{N}(i)} e_{j,i}\, \mathbf{W}^{(l)} \mathbf{h}_j^{(l-1)},
        \qquad \mathbf{h}_i^{(l)} = \operatorname{GRU}\big(\mathbf{m}_i^{(l)}, \mathbf{h}_i^{(l-1)}\big)

    for :math:`l = 1..L`, messages flowing source → target (``edge_index[0] → edge_index[1]``),
    :math:`e_{j,i}` the edge weight (1 without weights). The same parameters (``weight [L, d,
    d]``, ``rnn``) and outputs as :class:`torch_geometric.nn.GatedGraphConv` with ``aggr="add"``
    (tested), plus one thing it cannot do: ``output_nodes``, which updates at layer ``l`` only
    the nodes within ``L - l`` hops of the nodes whose outputs are needed. Every layer runs
    through :meth:`layer` whichever way it is called: one code path.

    Args:
        out_dim: node state size ``d`` (inputs narrower than ``d`` are zero-padded).
        num_layers: propagation steps ``L``.

    Shapes:
        - **x**: ``[N, F]`` with ``F <= d``; **edge_index**: ``[2, E]`` long; **edge_weight**:
          ``[E]`` or ``None``; **output_nodes**: bool ``[N]`` or an index, or ``None``.
        - **output**: ``[N, d]`` (with ``output_nodes``, only those rows are final).
    """

    #: With ``output_nodes`` on the CPU, sum the messages with a sparse matrix product (2-3x
    #: faster on large subgraphs; on a GPU gather + ``index_add`` is faster below ~10^5 edges).
    sparse_aggregation_on_cpu: bool = True

    @renamed_arguments(channels="out_dim")
    def __init__(self, out_dim: int, num_layers: int) -> None:
        super().__init__(aggr="add")
        self.out_dim, self.num_layers = out_dim, num_layers
        self.weight = nn.Parameter(torch.empty(num_layers, out_dim, out_dim))
        self.rnn = nn.GRUCell(out_dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        uniform(self.out_dim, self.weight)
        self.rnn.reset_parameters()

    def message(self, x_j: Tensor, edge_weight: Tensor | None) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def layer(self, index: int, h: Tensor, senders: Tensor, aggregate) -> Tensor:
        """One propagation step, the only one: ``aggregate(senders W^(l))`` returns the summed
        messages of the nodes being updated and their rows of ``h`` (``None`` = all), then the
        GRU gives those nodes' new states. ``senders`` are the states of the nodes that send
        (``h`` itself, or the rows of ``h`` the aggregation indexes)."""
        agg, rows = aggregate(senders @ self.weight[index])
        return self.rnn(agg, h if rows is None else h.index_select(0, rows))

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *, output_nodes: Tensor | None = None
    ) -> Tensor:
        if x.shape[-1] > self.out_dim:
            raise ValueError(f"node features of size {x.shape[-1]} exceed the state size {self.out_dim}")
        if x.shape[-1] < self.out_dim:
            x = torch.cat([x, x.new_zeros(x.shape[0], self.out_dim - x.shape[-1])], dim=-1)
        if output_nodes is None:
            h = x
            for index in range(self.num_layers):
                h = self.layer(index, h, h, lambda m: (self.propagate(edge_index, x=m, edge_weight=edge_weight), None))
            return h
        return self._pruned(x, edge_index, edge_weight, output_nodes)

    def _pruned(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None, output_nodes: Tensor) -> Tensor:
        n, L = x.shape[0], self.num_layers
        src, dst = edge_index
        # distance of every node to the output nodes, following edges backwards (BFS, L steps)
        dist = torch.full((n,), L + 1, dtype=torch.long, device=x.device)
        out_mask = torch.zeros(n, dtype=torch.bool, device=x.device)
        out_mask[output_nodes] = True
        dist[out_mask] = 0
        for k in range(1, L + 1):
            reach = dist[dst] == k - 1
            dist[src[reach]] = torch.minimum(dist[src[reach]], torch.full_like(src[reach], k))
        # sparse aggregation (CPU): edges sorted by target once, so each layer's rows come sorted
        sparse = x.device.type == "cpu" and self.sparse_aggregation_on_cpu
        if sparse:
            order = torch.argsort(dst, stable=True)
            src, dst = src[order], dst[order]
            if edge_weight is not None:
                edge_weight = edge_weight[order]
        h = x
        for index in range(L):
            need = torch.nonzero(dist <= L - 1 - index).flatten()
            if need.numel() == 0:
                break
            position = _positions(need, n)
            e = position[dst] >= 0
            # messages only from the nodes that send to ``need`` (within one more hop)
            senders = torch.nonzero(dist <= L - index).flatten()
            all_send = senders.numel() == n
            sender = src[e] if all_send else _positions(senders, n)[src[e]]
            rows = position[dst[e]]  # sorted when ``sparse``: position grows with the node id
            weights = edge_weight[e] if edge_weight is not None else None

            def aggregate(m: Tensor, need=need, sender=sender, rows=rows, weights=weights) -> tuple[Tensor, Tensor]:
                if sparse:  # agg = A m with A [need, senders]: no [E, d] message tensor
                    crow = torch.zeros(need.numel() + 1, dtype=torch.long, device=m.device)
                    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=need.numel()), 0)
                    values = weights.to(m.dtype) if weights is not None else m.new_ones(rows.numel())
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                        adj = torch.sparse_csr_tensor(crow, sender, values, (need.numel(), m.shape[0]))
                    return torch.sparse.mm(adj, m), need
                msg = self.message(m.index_select(0, sender), None if weights is None else weights.to(m.dtype))
                return msg.new_zeros(need.numel(), m.shape[-1]).index_add_(0, rows, msg), need

            states = h if all_send else h.index_select(0, senders)
            h = h.index_copy(0, need, self.layer(index, h, states, aggregate))
        return h

    def extra_repr(self) -> str:
        return f"{self.out_dim}, num_layers={self.num_layers}"


class GatedGraphEncoder(nn.Module):
    r"""A gated graph neural network (Li et al., 2016), GLORY's global news encoder:
    :class:`GatedGraphConvolution`, with optional edge weighting and an input projection.

    .. math::
        \mathbf{m}_i^{(l)} = \sum_{j \in \mathcal{N}(i)} e_{j,i}\, \mathbf{W}^{(l)} \mathbf{h}_j^{(l-1)},
        \qquad \mathbf{h}_i^{(l)} = \operatorname{GRU}\big(\mathbf{m}_i^{(l)}, \mathbf{h}_i^{(l-1)}\big)

    for :math:`l = 1..L`, with :math:`\mathbf{h}^{(0)}` the input zero-padded to ``out_dim``
    and :math:`e_{j,i}` the edge weight (1 without weights; with ``normalize_edge_weight``,
    :math:`w_{j,i} / \sum_{k} w_{k,i}`, so a node's incoming weights sum to 1). Messages flow
    along edges, source → target (``edge_index[0] → edge_index[1]``).

    Args:
        in_dim: input feature size; inputs narrower than ``out_dim`` are zero-padded (as
            GatedGraphConv does), wider ones are first projected by a linear layer.
        out_dim: output (node state) size.
        num_layers: propagation steps (3 in GLORY).
        use_edge_weight: weight messages by ``edge_weight`` (the official GLORY code does not).
        normalize_edge_weight: divide each edge's weight by the sum of the weights into its
            target node (a weighted mean of the messages: one heavy edge is not outvoted by many
            light ones). Needs ``use_edge_weight``.

    Shapes:
        - **x**: ``[N, in_dim]``.
        - **edge_index**: ``[2, E]`` long.
        - **edge_weight**: ``[E]`` or ``None``.
        - **output**: ``[N, out_dim]``.
    """

    @renamed_arguments(hidden_dim="out_dim")
    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_layers: int = 3,
        use_edge_weight: bool = True,
        normalize_edge_weight: bool = False,
    ) -> None:
        super().__init__()
        if normalize_edge_weight and not use_edge_weight:
            raise ValueError("normalize_edge_weight needs use_edge_weight=True")
        self.in_dim, self.out_dim, self.num_layers = in_dim, out_dim, num_layers
        self.use_edge_weight, self.normalize_edge_weight = use_edge_weight, normalize_edge_weight
        self.input_proj = nn.Linear(in_dim, out_dim) if in_dim > out_dim else None
        self.conv = GatedGraphConvolution(out_dim, num_layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        if self.input_proj is not None:
            self.input_proj.reset_parameters()

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *, output_nodes: Tensor | None = None
    ) -> Tensor:
        """Run the GGNN.

        Args:
            output_nodes: optional bool ``[N]`` (or index) of the nodes whose outputs are needed.
                Then layer ``l`` updates only the nodes within ``L - l`` hops (against the edge
                direction) of them — exactly what those outputs depend on — and the other rows
                of the result are not final.
        """
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"expected node features of size {self.in_dim}, got {x.shape[-1]}")
        if self.input_proj is not None:
            x = self.input_proj(x)
        if self.normalize_edge_weight:
            edge_index, edge_weight = _normalized(edge_index, edge_weight, x.shape[0])
        return self.conv(x, edge_index, edge_weight if self.use_edge_weight else None, output_nodes=output_nodes)

    def extra_repr(self) -> str:
        return (
            f"{self.in_dim}, {self.out_dim}, num_layers={self.num_layers}, "
            f"use_edge_weight={self.use_edge_weight}, normalize_edge_weight={self.normalize_edge_weight}"
        )


def _normalized(edge_index: Tensor, edge_weight: Tensor | None, num_nodes: int) -> tuple[Tensor, Tensor | None]:
    """The weights divided by the sum of the weights into each target node; ``edge_weight``
    ``None`` counts as ones."""
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.shape[1], device=edge_index.device)
    target = edge_index[1]
    total = edge_weight.new_zeros(num_nodes).index_add_(0, target, edge_weight)
    return edge_index, edge_weight / total.index_select(0, target).clamp_min(torch.finfo(edge_weight.dtype).tiny)


_BASIC_GNNS = {"gcn": GCN, "gat": GAT, "sage": GraphSAGE, "gin": GIN}


class MessagePassingEncoder(nn.Module):
    r"""``num_layers`` layers of a :mod:`torch_geometric.nn` convolution, ReLU between layers,
    ``in_dim`` wide throughout (PyG's :class:`~torch_geometric.nn.models.GCN`,
    :class:`~torch_geometric.nn.models.GAT`, :class:`~torch_geometric.nn.models.GraphSAGE` or
    :class:`~torch_geometric.nn.models.GIN`): the alternatives to GLORY's GGNN, e.g. for GCN
    :math:`\mathbf{H}^{(l)} = \sigma(\hat{\mathbf{D}}^{-1/2} \hat{\mathbf{A}} \hat{\mathbf{D}}^{-1/2}
    \mathbf{H}^{(l-1)} \mathbf{W}^{(l)})` (:math:`\sigma` = ReLU except after the last layer).

    Args:
        kind: ``"gcn"``, ``"gat"`` (one head), ``"sage"`` (mean aggregation) or ``"gin"`` (an
            MLP per layer).
        in_dim: input, hidden and output size.
        num_layers: layers (GLORY's 3).
        use_edge_weight: weight messages by ``edge_weight`` (``gcn`` only; the others have no
            scalar edge weights, so asking for them is an error).

    Shapes: **x** ``[N, in_dim]``, **edge_index** ``[2, E]``, **edge_weight** ``[E]`` or ``None`` →
    ``[N, in_dim]``. ``output_nodes`` is accepted for the common interface and ignored: every node
    is computed (exact for the output nodes too).
    """

    @renamed_arguments(dim="in_dim")
    def __init__(self, kind: str, in_dim: int, num_layers: int = 3, use_edge_weight: bool = False) -> None:
        super().__init__()
        check_graph_encoder(kind, use_edge_weight, normalize_edge_weight=False)
        if kind == "ggnn":
            raise ValueError("'ggnn' is GatedGraphEncoder (build_graph_encoder makes either)")
        self.kind, self.in_dim, self.out_dim, self.use_edge_weight = kind, in_dim, in_dim, use_edge_weight
        self.gnn = _BASIC_GNNS[kind](in_dim, in_dim, num_layers, in_dim)

    def reset_parameters(self) -> None:
        self.gnn.reset_parameters()

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None, *, output_nodes: Tensor | None = None
    ) -> Tensor:
        if self.kind == "gcn" and self.use_edge_weight:
            return self.gnn(x, edge_index, edge_weight=edge_weight)
        return self.gnn(x, edge_index)


def check_graph_encoder(kind: str, use_edge_weight: bool = False, normalize_edge_weight: bool = False) -> None:
    """The one check of a graph encoder's name (:data:`GRAPH_ENCODERS`) and edge-weight options:
    a ``ValueError`` naming what is wrong."""
    if kind not in GRAPH_ENCODERS:
        raise ValueError(f"graph_encoder must be one of {GRAPH_ENCODERS}, got {kind!r}")
    if kind == "ggnn":
        return
    if (use_edge_weight or normalize_edge_weight) and kind != "gcn":
        raise ValueError(f"the {kind!r} graph encoder takes no edge weights: use 'ggnn' or 'gcn' for weighted edges")
    if normalize_edge_weight:
        raise ValueError("edge weight normalisation is for 'ggnn' ('gcn' normalises by degrees itself)")


@renamed_arguments(dim="in_dim")
def build_graph_encoder(
    kind: str, in_dim: int, num_layers: int = 3, *, use_edge_weight: bool = False, normalize_edge_weight: bool = False
) -> nn.Module:
    """GLORY's graph encoder by name (:data:`GRAPH_ENCODERS`): ``"ggnn"`` →
    :class:`GatedGraphEncoder`, else :class:`MessagePassingEncoder`; ``in_dim`` in and out. An
    unknown name or edge weights for an encoder that takes none are one ``ValueError``."""
    check_graph_encoder(kind, use_edge_weight, normalize_edge_weight)
    if kind == "ggnn":
        return GatedGraphEncoder(in_dim, in_dim, num_layers, use_edge_weight, normalize_edge_weight)
    return MessagePassingEncoder(kind, in_dim, num_layers, use_edge_weight)
