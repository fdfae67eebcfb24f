"""MINDDataModule: one LightningDataModule for every newsrec model."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from newsrec.core import DataRequirements, ModelInputs
from newsrec.core.requirements import ROW_FIELD
from newsrec.data import derived, prepare, statistics
from newsrec.data.batching import BatchBuilder, ImpressionDataset, NewsDataset, TrainDataset
from newsrec.data.behaviors import Behaviors, TrainingSamples
from newsrec.data.corpus import CorpusConfig, NewsCorpus
from newsrec.data.prepare import data_signature, load_behaviors, load_corpus, load_graphs, split_files
from newsrec.data.samplers import EpochBatchSampler, ImpressionBatchSampler, ResumableLoader, history_order
from newsrec.data.text import load_entity_vectors

__all__ = ["MINDDataModule"]


def _identity(x):
    return x


class MINDDataModule(pl.LightningDataModule):
    """Data for every newsrec model from a MIND-format root (real MIND or a synthetic world).

    Builds (once, cached under ``root/processed/``) or loads the corpus, the behaviors of every
    split and, when the model asks for them, the global graphs; serves training batches
    (1 clicked + K negatives re-drawn every epoch), evaluation batches of whole impressions
    (identical histories encoded once) and chunks of the whole corpus.

    Args:
        root: the MIND root (``train/``, ``dev/`` [, ``test/``]).
        batch_size: training samples per batch (32 in GLORY).
        eval_batch_size: impressions per evaluation batch.
        num_negatives: K non-clicked candidates per training sample (4).
        history_length: most recent clicks kept (L_his = 50).
        num_workers: DataLoader worker processes (sampling and batch building run there).
        pin_memory: copy batches into page-locked memory (in a background thread of the
            DataLoader) so that their transfer to the GPU is asynchronous; ``"auto"`` (default)
            pins when the Trainer runs on a CUDA device (or, without a Trainer, when CUDA is
            available).
        seed: seed of the shuffling and negative sampling.
        val_split, test_split, predict_split: which split serves each stage.
        title_length: tokens per title (and likewise ``abstract_length``, ``num_entities``,
            ``entity_text_length``, ``entity_sources``, ``min_word_count``, ``max_vocab_size``:
            the :class:`CorpusConfig` fields).
        missing: policy for news ids the news files lack (``"error"`` / ``"drop"``).
        word_vectors: GloVe-format file (relative to ``root``) used to initialise word
            embeddings, or ``None``.
        synthetic: if given and ``root`` holds no data yet, a synthetic world is generated
            there first with these :func:`newsrec.data.generate_mind` arguments.
        requirements: what the model needs; normally given by ``model.connect_data(dm)``
            (which calls :meth:`configure`).
    """

    def __init__(
        self,
        root: str = "data/synthetic-demo",
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_negatives: int = 4,
        history_length: int = 50,
        num_workers: int = 0,
        pin_memory: bool | str = "auto",
        seed: int = 0,
        val_split: str = "dev",
        test_split: str = "dev",
        predict_split: str = "dev",
        title_length: int = 30,
        abstract_length: int = 50,
        num_entities: int = 5,
        entity_text_length: int = 20,
        entity_sources: tuple[str, ...] = ("title", "abstract"),
        min_word_count: int = 1,
        max_vocab_size: int | None = None,
        missing: str = "error",
        word_vectors: str | None = "word_vectors.txt",
        synthetic: dict | None = None,
        requirements: DataRequirements | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_negatives, self.history_length = num_negatives, history_length
        self.num_workers, self.seed = num_workers, seed
        if pin_memory not in (True, False, "auto"):
            raise ValueError(f"pin_memory must be True, False or 'auto', got {pin_memory!r}")
        self.pin_memory = pin_memory
        self.splits = {"validate": val_split, "test": test_split, "predict": predict_split}
        self.corpus_config = CorpusConfig(
            title_length,
            abstract_length,
            num_entities,
            entity_text_length,
            tuple(entity_sources),
            min_word_count,
            max_vocab_size,
        )
        self.missing, self.word_vectors_file, self.synthetic = missing, word_vectors, synthetic
        self.requirements = requirements
        self._corpus: NewsCorpus | None = None
        self._behaviors: dict[str, Behaviors] = {}
        self._builder: BatchBuilder | None = None
        self._entity_table: np.ndarray | None = None
        self._news_graph = self._transition_table = None
        self._plm_arrays: dict[str, np.ndarray] = {}

    # -- preparation ------------------------------------------------------------------------------
    def _ensure_root(self) -> None:
        if self.synthetic is not None:
            from newsrec.data.synthetic import ensure_synthetic_root

            ensure_synthetic_root(self.root, self.synthetic)

    def prepare_data(self) -> None:
        """Generate the synthetic world if asked, and build every cache (rank 0 only in DDP)."""
        self._ensure_root()
        corpus = load_corpus(self.root, self.corpus_config)
        for split in split_files(self.root):
            load_behaviors(self.root, split, corpus, missing=self.missing)
        if self.requirements is not None:
            self._graphs(corpus)
            self._plm_tokens(self.requirements)  # the PLM token cache, if the model reads PLM fields

    @property
    def corpus(self) -> NewsCorpus:
        if self._corpus is None:
            self._ensure_root()
            self._corpus = load_corpus(self.root, self.corpus_config)
        return self._corpus

    def behaviors(self, split: str) -> Behaviors:
        if split not in self._behaviors:
            self._behaviors[split] = load_behaviors(self.root, split, self.corpus, missing=self.missing)
        return self._behaviors[split]

    # sizes the models need (linked into the model by the CLI)
    @property
    def num_words(self) -> int:
        return len(self.corpus.vocab)

    @property
    def num_entity_ids(self) -> int:
        return len(self.corpus.entity_vocab)

    @property
    def num_categories(self) -> int:
        return len(self.corpus.category_vocab)

    @property
    def num_subcategories(self) -> int:
        return len(self.corpus.subcategory_vocab)

    @property
    def num_news(self) -> int:
        """Corpus rows (news plus the padding row 0): the size of a news-ID table."""
        return len(self.corpus)

    @property
    def num_users(self) -> int:
        """Rows of a user-ID table: the training split's users plus row 0, the unknown user."""
        return len(self.behaviors("train").user_ids) + 1

    def word_vectors(self) -> np.ndarray | None:
        """The GloVe-initialised word matrix ``[num_words, dim]`` (or ``None`` without a file)."""
        if self.word_vectors_file is None:
            return None
        if not (self.root / self.word_vectors_file).exists():
            self._note_missing_vectors()
            return None
        matrix, self.word_coverage = prepare.load_word_matrix(self.root, self.word_vectors_file, self.corpus.vocab)
        return matrix

    def _note_missing_vectors(self) -> None:
        """Warn once per datamodule about pretrained-vector files the root lacks."""
        if getattr(self, "_vectors_noted", False):
            return
        self._vectors_noted = True
        for note in prepare.missing_vector_notes(self.root, self.word_vectors_file):
            warnings.warn(note, UserWarning, stacklevel=3)

    def entity_vectors(self) -> np.ndarray | None:
        """The TransE entity matrix ``[num_entity_ids, dim]`` from the splits' ``.vec`` files."""
        files = [self.root / s / "entity_embedding.vec" for s in split_files(self.root)]
        files = [f for f in files if f.exists()]
        if not files:
            self._note_missing_vectors()
            return None
        matrix, coverage = load_entity_vectors(self.corpus.entity_vocab.stoi, files)
        self.entity_coverage = coverage
        return matrix

    def word_idf(self) -> np.ndarray:
        """Every word's IDF over the training split's news titles (:func:`~newsrec.data.statistics.word_idf`)."""
        rows = statistics.training_news_rows(self.behaviors("train"))
        return statistics.word_idf(self.corpus.arrays["title"], rows, self.num_words)

    def beyond_accuracy_inputs(self, dim: int = 64) -> dict:
        """What :class:`~newsrec.metrics.BeyondAccuracyMetrics` needs about every news
        (:func:`~newsrec.data.beyond.beyond_accuracy_inputs`), computed once per datamodule."""
        if getattr(self, "_beyond_inputs", None) is None:
            from newsrec.data.beyond import beyond_accuracy_inputs

            self._beyond_inputs = beyond_accuracy_inputs(
                self.corpus, self.behaviors("train"), self.word_vectors(), dim=dim
            )
        return self._beyond_inputs

    # -- graphs -------------------------------------------------------------------------------------
    def _graphs(self, corpus: NewsCorpus):
        """The graphs the requirements name, built once (:func:`~newsrec.data.prepare.load_graphs`)."""
        train = load_behaviors(self.root, "train", corpus, missing=self.missing)
        return load_graphs(self.root, corpus, train, self.requirements)

    # -- setup ----------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Lightning's hook: builds the batch builder for the configured requirements (the
        default ones if :meth:`configure` was never called). It never asks the Trainer for the
        model: the model's needs arrive through :meth:`configure`
        (``model.connect_data(dm)`` makes that call)."""
        if self._builder is None or self._builder.requirements != self.requirements:
            self.configure(self.requirements or DataRequirements())

    def configure(self, requirements: DataRequirements) -> None:
        """Build what a model's requirements name: graphs, samplers, transition tables and the
        batch builder. The model → data half of the handshake (:mod:`newsrec.core.requirements`);
        ``model.connect_data(dm)`` calls it with ``model.data_requirements()``."""
        from newsrec.graphs import EntityNeighborSampler, KHopSampler

        self.requirements = requirements
        news_graph, entity_graph = self._graphs(self.corpus)
        sampler = None
        if news_graph is not None:
            sampler = KHopSampler(news_graph, **asdict(requirements.news_graph_sampling))
        self._entity_table = None
        if entity_graph is not None:
            self._entity_table = EntityNeighborSampler(entity_graph, requirements.entity_neighbors).table.numpy()
        transitions = future = None
        if requirements.transitions is not None:
            from newsrec.graphs.transitions import transition_tables

            train = self.behaviors("train")
            values, offsets, users = train.user_sequences(return_users=True)
            transitions, future = transition_tables(values, offsets, users, len(train.user_ids), len(self.corpus))
        self._news_graph, self._transition_table = news_graph, transitions
        self._plm_arrays = self._plm_tokens(requirements)
        self._builder = BatchBuilder(
            self.corpus,
            requirements,
            arrays=self.news_arrays(),
            khop_sampler=sampler,
            entity_table=self._entity_table,
            transition_table=transitions,
            future_edges=future,
        )

    def _plm_tokens(self, requirements: DataRequirements) -> dict[str, np.ndarray]:
        """The derived news fields the requirements name: ``plm_*`` token ids, aligned title
        entities (:func:`~newsrec.data.derived.derived_news_arrays`)."""
        train = lambda: self.behaviors("train")  # noqa: E731
        return derived.derived_news_arrays(self.root, self.corpus, requirements, train, self.word_vectors)

    def news_arrays(self) -> dict[str, np.ndarray]:
        """Every news field the configured requirements can ask for, ``{field: [N, ...]}``: the
        corpus arrays, the ``plm_*`` token ids (call :meth:`configure` first) and ``row``."""
        return {**self.corpus.arrays, **self._plm_arrays, ROW_FIELD: np.arange(len(self.corpus), dtype=np.int64)}

    def encode_news_rows(self, rows, *, name: str = "news rows") -> dict[str, np.ndarray]:
        """Arrays of new news (:meth:`NewsCorpus.encode_rows`, plus the configured derived fields
        made as for the corpus: :func:`~newsrec.data.derived.encode_derived_rows`): what serving
        adds without retraining."""
        out = self.corpus.encode_rows(rows, name=name)
        return {**out, **derived.encode_derived_rows(rows, self._plm_arrays, self.requirements, self.corpus, out)}

    @property
    def builder(self) -> BatchBuilder:
        if self._builder is None:
            self.configure(self.requirements or DataRequirements())
        return self._builder

    # -- loaders -------------------------------------------------------------------------------------
    def _pin(self) -> bool:
        """Whether loaders pin their batches (see ``pin_memory``)."""
        if self.pin_memory != "auto":
            return bool(self.pin_memory)
        trainer = getattr(self, "trainer", None)  # only its device: the model comes by configure()
        if trainer is not None:
            return trainer.strategy.root_device.type == "cuda"
        return torch.cuda.is_available()

    def _loader(self, dataset, sampler, loader_class: type[DataLoader] = DataLoader) -> DataLoader:
        return loader_class(
            dataset,
            sampler=sampler,
            batch_size=None,
            collate_fn=_identity,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self._pin(),
        )

    def training_samples(self) -> TrainingSamples:
        return TrainingSamples(self.behaviors("train"), self.num_negatives, self.seed)

    def train_dataloader(self) -> DataLoader:
        samples = self.training_samples()
        train = self.behaviors("train")
        ds = TrainDataset(train, samples, self.builder, self.history_length, train.user_ids)
        sampler = EpochBatchSampler(len(samples), self.batch_size, shuffle=True, seed=self.seed)
        return self._loader(ds, sampler, ResumableLoader)

    def _impressions(self, split: str) -> DataLoader:
        b = self.behaviors(split)
        ds = ImpressionDataset(b, self.builder, self.history_length, self.behaviors("train").user_ids)
        return self._loader(ds, ImpressionBatchSampler(history_order(b), self.eval_batch_size))

    def val_dataloader(self) -> DataLoader:
        return self._impressions(self.splits["validate"])

    def test_dataloader(self) -> DataLoader:
        return self._impressions(self.splits["test"])

    def predict_dataloader(self) -> DataLoader:
        return self._impressions(self.splits["predict"])

    def news_dataloader(self, batch_size: int = 1024) -> DataLoader:
        """Chunks of the whole corpus (rows 0..N-1, in order), for encoding every news once."""
        ds = NewsDataset(self.news_arrays(), self.builder.requirements.news_fields, self._entity_table)
        sampler = BatchSampler(SequentialSampler(range(len(ds))), batch_size, drop_last=False)
        return DataLoader(
            ds, sampler=sampler, batch_size=None, collate_fn=_identity, num_workers=0, pin_memory=self._pin()
        )

    def serving_builder(self, arrays: dict[str, np.ndarray] | None = None, live=None) -> BatchBuilder:
        """A batch builder whose news fields come from ``arrays`` (``{field: [N', ...]}``: the
        corpus's rows, some perhaps updated, then added news at rows ``len(corpus)…``, as the
        serving side keeps them; ``None``: the corpus itself). ``live``: a serving
        :class:`~newsrec.serving.live.LiveSnapshot` whose sampler, transition counts and entity
        neighbours replace the training graphs' (those the requirements ask for); without it,
        added news are isolated nodes of the training graphs. Call :meth:`configure` first."""
        from torch_geometric.data import Data

        from newsrec.graphs import KHopSampler

        req = self.builder.requirements
        if live is not None:
            sampler, entities, counts = live.khop_sampler, live.entity_table, live.transition_table
            return BatchBuilder(self.corpus, req, arrays=self.news_arrays() if arrays is None else arrays,
                                khop_sampler=sampler if self._news_graph is not None else None,
                                entity_table=entities if self._entity_table is not None else None,
                                transition_table=counts if self._transition_table is not None else None)  # fmt: skip
        if arrays is None:
            return self._builder
        n_added = len(next(iter(arrays.values()))) - len(self.corpus)
        sampler = self._builder.khop_sampler
        if self._news_graph is not None and n_added > 0:
            g = self._news_graph
            graph = Data(edge_index=g.edge_index, edge_weight=g.edge_weight, num_nodes=int(g.num_nodes) + n_added)
            sampler = KHopSampler(graph, **asdict(req.news_graph_sampling))
        return BatchBuilder(
            self.corpus,
            req,
            khop_sampler=sampler,
            entity_table=self._entity_table,
            transition_table=self._transition_table,
            arrays=arrays,
        )

    def signature(self) -> dict:
        """What a trained model's data must match (:func:`~newsrec.data.prepare.data_signature`)."""
        return data_signature(self.root, self.corpus, self.history_length, self.missing, self.word_vectors_file)

    def model_inputs(self) -> ModelInputs:
        """The data → model half of the handshake (:class:`~newsrec.core.ModelInputs`): the
        pretrained word and entity matrices, chunks of the whole corpus with the configured
        fields, the corpus size and the beyond-accuracy inputs. Call :meth:`configure` first."""
        if self._builder is None:
            self.configure(self.requirements or DataRequirements())
        return ModelInputs(
            pretrained={"words": self.word_vectors, "entities": self.entity_vectors},
            news_chunks=self.news_dataloader,
            num_news=len(self.corpus),
            beyond_accuracy=self.beyond_accuracy_inputs,
            signature=self.signature,
            word_idf=self.word_idf,
        )

    def state_dict(self) -> dict:  # the loaders' positions travel with ResumableLoader
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state.get("seed", self.seed)
