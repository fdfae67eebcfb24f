"""Serving: a trained model in front of readers — :class:`Recommender` (checkpoint → news vector
index → top-k, fresh news without retraining) and the HTTP service behind ``newsrec serve``
(:func:`~newsrec.serving.app.create_app`, extra ``[serve]``)."""

from newsrec.serving.recommender import NEWS_FIELDS, Recommendations, Recommender
from newsrec.serving.search import ExactSearch, FaissSearch, make_search

__all__ = ["NEWS_FIELDS", "ExactSearch", "FaissSearch", "Recommendations", "Recommender", "make_search"]
