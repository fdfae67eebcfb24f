"""LightningModules sharing one protocol (``encode_news``, ``encode_users``, ``score``)."""

from newsrec.models.base import NewsCache, NewsRecModel
from newsrec.models.deepfm import DeepFM
from newsrec.models.digat import DIGAT
from newsrec.models.dkn import DKN
from newsrec.models.fastformer import FastformerNR
from newsrec.models.fim import FIM
from newsrec.models.fum import FUM
from newsrec.models.gerl import GERL
from newsrec.models.glory import GLORY
from newsrec.models.gnewsrec import GNewsRec
from newsrec.models.gru import GRU
from newsrec.models.hierec import HieRec
from newsrec.models.kred import KRED
from newsrec.models.libfm import LibFM
from newsrec.models.lstur import LSTUR
from newsrec.models.miner import MINER
from newsrec.models.naml import NAML
from newsrec.models.npa import NPA
from newsrec.models.nrms import NRMS
from newsrec.models.user_as_graph import UserAsGraph

__all__ = [
    "DIGAT",
    "DKN",
    "FIM",
    "DeepFM",
    "FUM",
    "GERL",
    "GLORY",
    "GRU",
    "KRED",
    "LSTUR",
    "LibFM",
    "MINER",
    "NAML",
    "NPA",
    "NRMS",
    "FastformerNR",
    "GNewsRec",
    "HieRec",
    "NewsCache",
    "NewsRecModel",
    "UserAsGraph",
]
