"""Runs grouped by protocol: ``compare`` ranks only runs measured on one protocol (docs/protocols.md).

Every run records a protocol card (:mod:`emoexp.engine.card`) and tags its hash. Runs with
different hashes were split, labelled or sampled differently, so their figures do not rank
against each other; the refusal names the fields in which their cards differ. Runs recorded
before cards existed have no hash and form the group ``unknown``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from emoexp.comparison.analysis import ranked_runs
from emoexp.comparison.runs import Run, RunSelectionError, artifact_path
from emoexp.engine.card import CARD_ARTIFACT, HASH_TAG, card_differences

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
"""The group of runs without a protocol card (recorded before cards existed)."""


def protocol_groups(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by protocol hash (tag ``protocol.hash``; :data:`UNKNOWN` without one), in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.tags.get(HASH_TAG) or UNKNOWN, []).append(run)
    return groups


def load_card(client: Any, run: Run) -> dict[str, Any] | None:
    """The run's ``protocol_card.json`` (``None`` for a run without one)."""
    if HASH_TAG not in run.tags:
        return None
    try:
        return json.loads(artifact_path(client, run.run_id, CARD_ARTIFACT).read_text())
    except RunSelectionError:
        return None


def describe_differences(client: Any, groups: dict[str, list[Run]]) -> list[str]:
    """One line per group after the first: how its card differs from the first group's card."""
    hashes = list(groups)
    reference = load_card(client, groups[hashes[0]][0])
    lines = []
    for other in hashes[1:]:
        card = load_card(client, groups[other][0])
        if reference is None or card is None:
            lines.append(
                f"{hashes[0]} vs {other}: one side has no protocol card (recorded before cards existed)"
            )
            continue
        fields = [f"{name} ({_short(a)} vs {_short(b)})" for name, a, b in card_differences(reference, card)]
        lines.append(
            f"{hashes[0]} vs {other}: {'; '.join(fields) or 'no definition field (other card versions)'}"
        )
    return lines


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_protocols(client: Any, runs: Sequence[Run], mixed_protocols: bool = False) -> list[str]:
    """Refuse to rank runs of different protocols unless ``mixed_protocols``; return notes for the report.

    Only the runs a comparison ranks count (:func:`~emoexp.comparison.analysis.ranked_runs`):
    a tuning study without test figures does not make a selection mixed.

    Args:
        client: MLflow client (reads the runs' protocol cards).
        runs: The selected runs.
        mixed_protocols: Rank runs of different protocol hashes anyway (the notes then say what differs).

    Returns:
        Notes: runs without a card, and with ``mixed_protocols`` what differs between the protocols.

    Raises:
        RunSelectionError: For runs of more than one protocol without ``mixed_protocols``; the
            message names each group and the card fields that differ.
    """
    groups = protocol_groups(ranked_runs(runs))
    notes = []
    if UNKNOWN in groups:
        note = (
            f"{len(groups[UNKNOWN])} run(s) have no protocol card (recorded before cards existed) and form "
            f"the group '{UNKNOWN}': {', '.join(r.name for r in groups[UNKNOWN][:10])}."
        )
        log.warning(note)
        notes.append(note)
    if len(groups) < 2:
        return notes
    sizes = ", ".join(f"{h} ({len(g)} run(s), e.g. {g[0].name})" for h, g in groups.items())
    differences = describe_differences(client, groups)
    if not mixed_protocols:
        raise RunSelectionError(
            f"the selected runs follow {len(groups)} different protocols ({HASH_TAG}): {sizes}. "
            "They differ in: "
            f"{' | '.join(differences)}. Compare runs of one protocol (e.g. filter='{HASH_TAG}="
            f"{next(iter(groups))}') or pass mixed_protocols=true to rank them anyway."
        )
    note = (
        f"mixed_protocols=true: runs of {len(groups)} protocols are ranked together ({sizes}); "
        + " | ".join(differences)
    )
    log.warning(note)
    notes.append(note)
    return notes
