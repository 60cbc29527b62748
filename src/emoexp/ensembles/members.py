"""Ensemble members: their stored predictions, label scheme, and the checks that they fit together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emoexp.comparison.runs import Run, load_config, load_predictions
from emoexp.ensembles.combine import EnsembleError

KEY = ("block", "split", "id")


@dataclass
class Member:
    """One member run: its run record, predictions and label scheme config."""

    run: Run
    predictions: pd.DataFrame
    scheme_config: dict[str, Any]


def load_members(client: Any, runs: Sequence[Run]) -> list[Member]:
    """Read each run's predictions and label scheme.

    Raises:
        EnsembleError: With fewer than two members, a member listed twice, or a member
            without validation and test predictions.
    """
    if len(runs) < 2:
        raise EnsembleError(f"an ensemble needs at least 2 members, got {len(runs)}; select more runs.")
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise EnsembleError(f"a member is listed twice: {ids}.")
    members = []
    for run in runs:
        frame = load_predictions(client, run)
        splits = set(frame["split"])
        if not {"val", "test"} <= splits:
            raise EnsembleError(
                f"member {run.run_id} ({run.name}) has predictions for {sorted(splits)}, but an ensemble "
                "needs "
                "validation (to learn weights/stacking) and test predictions."
            )
        frame = frame.assign(block=frame["fold"].astype(str) if "fold" in frame.columns else "holdout")
        members.append(Member(run, frame, load_config(client, run).get("label_scheme") or {}))
    return members


def build_scheme(members: Sequence[Member]) -> Any:
    """The members' common label scheme.

    Raises:
        EnsembleError: If members were trained with different label schemes (classes or dimensions).
    """
    from emoexp.config import instantiate

    def essence(config: dict[str, Any]) -> tuple:
        scheme = instantiate(config)
        return (scheme.name, scheme.class_names, scheme.dimension_names)

    reference = essence(members[0].scheme_config)
    for member in members[1:]:
        other = essence(member.scheme_config)
        if other != reference:
            raise EnsembleError(
                f"members use different label schemes: {members[0].run.run_id} has {reference}, "
                f"{member.run.run_id} has {other}; ensemble runs of one label_scheme "
                "(filter='label_scheme=...')."
            )
    scheme = instantiate(members[0].scheme_config)
    # Ensembles combine single-label class probabilities and/or dimensions; a scheme with
    # neither (multi-label) has nothing they can average.
    if not scheme.class_names and not scheme.dimension_names:
        raise EnsembleError(
            f"ensembles support categorical, dimensional and 'both' schemes, not {scheme.name!r}."
        )
    return scheme


def align(members: Sequence[Member]) -> list[pd.DataFrame]:
    """Members' predictions in one row order, after checking they cover the same samples.

    Raises:
        EnsembleError: If members predict different (block, split, id) sets or disagree about
            a sample's true label (they were evaluated on different data or splits).
    """
    keyed = []
    for member in members:
        frame = member.predictions
        duplicated = frame.duplicated(list(KEY))
        if duplicated.any():
            raise EnsembleError(
                f"member {member.run.run_id} has duplicated predictions, e.g. "
                f"{frame.loc[duplicated, list(KEY)].head(3).values.tolist()}."
            )
        keyed.append(frame.set_index(list(KEY)).sort_index())
    reference = keyed[0].index
    for member, frame in zip(members[1:], keyed[1:], strict=True):
        if not frame.index.equals(reference):
            only_first = reference.difference(frame.index)
            only_other = frame.index.difference(reference)
            raise EnsembleError(
                f"members {members[0].run.run_id} and {member.run.run_id} do not cover the same samples "
                f"({len(only_first)} only in the first, e.g. {list(only_first[:3])}; {len(only_other)} only "
                f"in the second, e.g. {list(only_other[:3])}). Members must share data, protocol and seed "
                "(same split), "
                f"e.g. data_fingerprint {members[0].run.tags.get('data_fingerprint')} vs "
                f"{member.run.tags.get('data_fingerprint')}."
            )
        for column in [c for c in frame.columns if c == "target" or c.endswith("_true")]:
            a, b = keyed[0][column], frame[column]
            if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
                same = np.isclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True)
            else:
                same = ((a.astype(str) == b.astype(str)) | (a.isna() & b.isna())).to_numpy()
            if not np.all(same):
                raise EnsembleError(
                    f"members {members[0].run.run_id} and {member.run.run_id} disagree on {column!r} for "
                    f"{int((~np.asarray(same)).sum())} samples: they were not evaluated on the same labels."
                )
    return [frame.reset_index() for frame in keyed]
