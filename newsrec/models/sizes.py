"""The data's half of the handshake of :class:`~newsrec.models.NewsRecModel`: ``connect_data``,
and the data's sizes: build a model with them in one call (:meth:`DataSizesMixin.from_data`), and
refuse, in one line, a model whose tables were built with other sizes than the data it is
connected to."""

from __future__ import annotations

__all__ = ["DataSizesMixin"]


class DataSizesMixin:
    """``connect_data``, ``from_data``, ``data_sizes_used`` and ``check_data_sizes``."""

    def connect_data(self, data, stage: str = "fit"):
        """``data.configure(self.data_requirements())``, then ``attach_data`` with
        ``data.model_inputs()`` (``init_pretrained`` for ``stage="fit"``). Returns the model.
        A size the model's tables were built with that is not the data's is one clear error
        (:meth:`check_data_sizes`)."""
        self.check_data_sizes(data)
        data.configure(self.data_requirements())
        self.attach_data(data.model_inputs(), init_pretrained=stage == "fit")
        return self

    @classmethod
    def from_data(cls, data, stage: str = "fit", **hparams):
        """Build the model with the data's sizes (:data:`~newsrec.core.DATA_SIZE_ARGUMENTS`: the
        data module's properties of those names) and ``hparams``, then ``connect_data``.

        ``NRMS.from_data(dm, word_dim=50)`` is ``NRMS(num_words=dm.num_words, …,
        num_news=dm.num_news, word_dim=50).connect_data(dm)``; a size given in ``hparams`` wins
        (and is checked against the data like any other)."""
        sizes = {name: getattr(data, name) for name in cls.data_size_arguments if name not in hparams}
        return cls(**sizes, **hparams).connect_data(data, stage=stage)

    def data_sizes_used(self) -> tuple[str, ...]:
        """The data sizes this model's tables are built with (checked by ``connect_data``):
        ``num_words`` with a word table, ``num_users`` with user ids, and ``num_categories`` /
        ``num_subcategories`` / ``num_entity_ids`` / ``num_news`` when the model reads the
        ``category`` / ``subcategory`` / entity / ``row`` news fields. A model with another
        table sized by the data overrides this."""
        req = self.data_requirements()
        fields = set(req.news_fields)
        used = {
            "num_words": self.word_embedding is not None,
            "num_users": req.user_ids,
            "num_categories": "category" in fields,
            "num_subcategories": "subcategory" in fields,
            "num_entity_ids": bool(fields & {"entities", "title_entity_words"}) or req.entity_neighbors is not None,
            "num_news": "row" in fields,
        }
        return tuple(name for name, yes in used.items() if yes)

    def check_data_sizes(self, data) -> None:
        """One clear ``ValueError`` (naming every wrong size, the data's value and the fix) when
        a size of :meth:`data_sizes_used` is not the data's: a smaller table would silently
        merge ids (NPA clamps unknown users to row 0) or fail deep inside a forward."""
        wrong = [
            f"{name}={getattr(self, name)} (the data has {getattr(data, name)})"
            for name in self.data_sizes_used()
            if hasattr(data, name) and getattr(self, name) != getattr(data, name)
        ]
        if wrong:
            name = type(self).__name__
            raise ValueError(
                f"{name} was built with {', '.join(wrong)}: build it with {name}.from_data(dm, **hparams) "
                "(the data's sizes), or pass those sizes from the data module"
            )
