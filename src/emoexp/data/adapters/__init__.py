"""Readers of the standard corpora in their official layout, each returning a manifest.

Every ``load_<corpus>(root, ..., on_error="raise")`` maps the corpus onto the sample schema
(``emoexp.data.schema``): native labels onto canonical emotion names, speaker/subject ids,
``group_*`` attributes, valence/arousal and ``official_split`` where the corpus has them.
Bad files raise a :class:`CorpusError` naming the file, or with ``on_error="skip"`` are left
out and listed (:func:`skipped_report`). See ``docs/datasets.md``.
"""

from emoexp.data.adapters.base import CorpusError, skipped_report
from emoexp.data.adapters.cremad import load_cremad
from emoexp.data.adapters.emodb import load_emodb
from emoexp.data.adapters.fer2013 import load_fer2013
from emoexp.data.adapters.hf_dataset import load_hf_dataset
from emoexp.data.adapters.iemocap import load_iemocap
from emoexp.data.adapters.image_folder import load_image_folder
from emoexp.data.adapters.ravdess import load_ravdess
from emoexp.data.adapters.text_table import load_text_table

__all__ = [
    "CorpusError",
    "load_cremad",
    "load_emodb",
    "load_fer2013",
    "load_hf_dataset",
    "load_iemocap",
    "load_image_folder",
    "load_ravdess",
    "load_text_table",
    "skipped_report",
]
