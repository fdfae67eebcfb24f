"""LightningModules sharing one protocol (``encode_news``, ``encode_users``, ``score``)."""

from newsrec.models.base import NewsCache, NewsRecModel
from newsrec.models.fum import FUM
from newsrec.models.glory import GLORY
from newsrec.models.nrms import NRMS

__all__ = ["FUM", "GLORY", "NRMS", "NewsCache", "NewsRecModel"]
