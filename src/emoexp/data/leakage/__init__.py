"""The leakage guard: group overlap and (near-)duplicates across train, validation and test.

See docs/leakage.md. The engine calls :func:`guard_leakage` once the folds are made.
"""

from emoexp.data.leakage.detect import AudioSettings, ImageSettings, TextSettings
from emoexp.data.leakage.guard import (
    DEFAULT_GROUPS,
    MODES,
    REPORT_COLUMNS,
    LeakageError,
    LeakageResult,
    guard_leakage,
)

__all__ = [
    "DEFAULT_GROUPS",
    "MODES",
    "REPORT_COLUMNS",
    "AudioSettings",
    "ImageSettings",
    "LeakageError",
    "LeakageResult",
    "TextSettings",
    "guard_leakage",
]
