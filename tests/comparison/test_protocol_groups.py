"""``compare`` groups runs by protocol hash and ranks across protocols only when asked (docs/protocols.md)."""

from __future__ import annotations

import mlflow
import pytest

from emoexp import cliargs, compare
from emoexp.comparison import protocols
from emoexp.comparison.runs import RunSelectionError, select_runs
from emoexp.engine.card import HASH_TAG
from emoexp.train import train


def _options(tracking_uri: str, tmp_path, **extra) -> compare.CompareOptions:
    defaults = {"log": False, "n_resamples": 200, "group_by": ["protocol", "seed"]}
    return compare.CompareOptions(
        tracking_uri=tracking_uri, output_dir=str(tmp_path / "report"), **{**defaults, **extra}
    )


@pytest.fixture
def two_protocols(compose, tracking_uri: str) -> dict[str, str]:
    """Real svm runs: holdout with seeds 1 and 2, speaker_holdout with seed 1; their hashes by protocol."""
    for overrides in (["protocol=holdout", "seed=1"], ["protocol=holdout", "seed=2"]):
        train(compose(["model=svm", *overrides]))
    train(compose(["model=svm", "protocol=speaker_holdout", "seed=1"]))
    runs = select_runs(mlflow.MlflowClient(tracking_uri))
    return {r.tags["protocol"]: r.tags[HASH_TAG] for r in runs}


def test_compare_refuses_mixed_protocols_naming_what_differs_and_ranks_them_when_asked(
    two_protocols, tracking_uri, tmp_path, capsys
):
    assert two_protocols["holdout"] != two_protocols["speaker_holdout"]
    with pytest.raises(RunSelectionError) as refused:
        compare.run(_options(tracking_uri, tmp_path))
    message = str(refused.value)
    assert "2 different protocols" in message and "mixed_protocols=true" in message
    for name in ("split.kind", "split.grouping", "split.speaker_independent_asserted"):
        assert name in message
    assert '"holdout" vs "speaker_holdout"' in message
    # The command line says the same, as one error line, exit status 2.
    base = [
        f"tracking_uri={tracking_uri}",
        f"output_dir={tmp_path / 'cli'}",
        "log=false",
        "group_by=protocol",
    ]
    assert cliargs.run_cli(compare.main, base) == 2
    assert "split.kind" in capsys.readouterr().err

    mixed = compare.run(_options(tracking_uri, tmp_path, mixed_protocols=True))["comparison"]
    assert len(mixed.leaderboard) == 3
    assert any("mixed_protocols=true" in n and "split.kind" in n for n in mixed.notes)

    # Seeds of one protocol share its hash and compare as before, without a protocol note.
    one = f"{HASH_TAG}={two_protocols['holdout']}"
    comparison = compare.run(_options(tracking_uri, tmp_path, filter=one))["comparison"]
    assert set(comparison.leaderboard["system"]) == {"holdout/1", "holdout/2"}
    assert not any("protocol" in note for note in comparison.notes)


def test_runs_without_a_card_form_the_group_unknown(log_run, compose, tracking_uri, tmp_path):
    old = [log_run(model="a", seed=0), log_run(model="b", seed=0)]
    train(compose(["model=svm", "protocol=holdout", "seed=1"]))
    client = mlflow.MlflowClient(tracking_uri)
    groups = protocols.protocol_groups(select_runs(client))
    assert {r.run_id for r in groups[protocols.UNKNOWN]} == set(old) and len(groups) == 2
    # Old runs alone compare as they always did, with a warning in the notes.
    alone = compare.run(_options(tracking_uri, tmp_path, filter="model=a,b", group_by=["model"]))
    assert any("no protocol card" in note for note in alone["comparison"].notes)
    # Mixed with carded runs they are another group: refused, naming the missing card.
    with pytest.raises(RunSelectionError, match="no protocol card") as refused:
        compare.run(_options(tracking_uri, tmp_path, group_by=["model"]))
    assert protocols.UNKNOWN in str(refused.value)
