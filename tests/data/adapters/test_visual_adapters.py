"""FER2013 and class-per-folder image adapters on tiny corpora in their official layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emoexp.data import schema
from emoexp.data.adapters import CorpusError, load_fer2013, load_image_folder, skipped_report

# -------------------------------------------------------------------------------------- FER2013


def _pixels(seed: int) -> str:
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, 48 * 48)))


def _make_fer(root: Path, extra: list[bytes] = ()) -> Path:
    usages = ["Training", "Training", "PublicTest", "PrivateTest"]
    lines = [b"emotion,pixels,Usage"]
    for i in range(14):
        lines.append(f"{i % 7},{_pixels(i)},{usages[i % 4]}".encode())
    lines += list(extra)
    root.mkdir(parents=True, exist_ok=True)
    (root / "fer2013.csv").write_bytes(b"\n".join(lines) + b"\n")
    return root


def test_fer2013_labels_official_splits_and_cached_pngs(tmp_path):
    root = _make_fer(tmp_path / "fer2013")
    manifest = load_fer2013(root, cache_dir=tmp_path / "cache")
    assert len(manifest) == 14
    first = manifest.set_index(schema.ID).loc["fer2013_00000"]
    assert first[schema.EMOTION] == "anger" and first[schema.OFFICIAL_SPLIT] == "train"
    order = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert manifest[schema.EMOTION].tolist() == [order[i % 7] for i in range(14)]
    assert manifest[schema.OFFICIAL_SPLIT].tolist() == [
        ["train", "train", "val", "test"][i % 4] for i in range(14)
    ]
    assert (manifest[schema.SPEAKER] == manifest[schema.ID]).all()
    with Image.open(first[schema.IMAGE]) as image:
        assert image.size == (48, 48) and image.mode == "L"
        expected = np.array(_pixels(0).split(), dtype=np.uint8).reshape(48, 48)
        assert np.array_equal(np.asarray(image), expected)
    assert Path(first[schema.IMAGE]).is_relative_to(tmp_path / "cache" / "fer2013")
    # Decoded once: a second load reuses the PNGs; data.root may also be the CSV itself.
    mtime = Path(first[schema.IMAGE]).stat().st_mtime_ns
    again = load_fer2013(root / "fer2013.csv", cache_dir=tmp_path / "cache")
    assert again[schema.IMAGE].tolist() == manifest[schema.IMAGE].tolist()
    assert Path(first[schema.IMAGE]).stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"9," + _pixels(1).encode() + b",Training", "emotion '9' is not one of 0-6"),
        (b"3,1 2 3,Training", "pixels has 3 values; expected 2304 (48x48 gray values)"),
        (b"3," + " ".join(["7.5", *_pixels(3).split()[1:]]).encode() + b",Training", "non-integer value(s)"),
        (b"3," + " ".join(["256", *_pixels(4).split()[1:]]).encode() + b",Training", "1 value(s) above 255"),
        (b"3," + _pixels(2).encode() + b",Nonsense", "Usage 'Nonsense'"),
        (b"3,\xff\xfe," + b"Training", "is not valid utf-8"),
    ],
)
def test_fer2013_bad_rows(tmp_path, line, problem):
    root = _make_fer(tmp_path / "fer", extra=[line])
    with pytest.raises(CorpusError) as error:
        load_fer2013(root, cache_dir=tmp_path / "cache")
    assert problem in str(error.value) and "fer2013.csv line 16 (file line" in str(error.value)
    manifest = load_fer2013(root, cache_dir=tmp_path / "cache", on_error="skip")
    assert len(manifest) == 14
    report = skipped_report(manifest)
    assert len(report) == 1 and problem in report["problem"].iloc[0]
    assert report["file"].iloc[0].startswith(f"{root / 'fer2013.csv'} line 16 (file line")
    # The cache remembers the bad row: loading with on_error=raise still refuses.
    with pytest.raises(CorpusError, match=r"fer2013\.csv"):
        load_fer2013(root, cache_dir=tmp_path / "cache")


def test_fer2013_short_pixels_report_the_real_count_and_file_line(tmp_path):
    short = _pixels(5).split()[:2301]
    rows = [
        b"\xff\xfe,broken,Training",  # line 16: not UTF-8, left out
        b"",  # line 17: blank
        f"3,{' '.join(short)},Training".encode(),  # line 18
        f"4,{' '.join([*short[:-1], '12.5'])},PublicTest".encode(),  # line 19: short and a float
    ]
    root = _make_fer(tmp_path / "fer", extra=rows)
    csv = root / "fer2013.csv"
    with pytest.raises(CorpusError, match=r"fer2013\.csv line 16 \(file line\): is not valid utf-8"):
        load_fer2013(root, cache_dir=tmp_path / "cache")
    manifest = load_fer2013(root, cache_dir=tmp_path / "cache2", on_error="skip")
    assert manifest[schema.ID].tolist() == [f"fer2013_{i:05d}" for i in range(14)]
    report = skipped_report(manifest)
    short_problem = "pixels has 2301 values; expected 2304 (48x48 gray values)"
    assert report["file"].tolist() == [
        f"{csv} line 16 (file line)",
        f"{csv} line 18 (file line, header counted)",
        f"{csv} line 19 (file line, header counted)",
    ]
    assert report["problem"].tolist()[1:] == [short_problem, short_problem]
    # The reported lines are the short rows of the file on disk.
    lines = csv.read_bytes().split(b"\n")
    assert [len(lines[n - 1].split(b",")[1].split()) for n in (18, 19)] == [2301, 2301]


def test_fer2013_missing_root_and_columns(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_fer2013(tmp_path / "nope", cache_dir=tmp_path / "cache")
    with pytest.raises(CorpusError, match=r"no fer2013\.csv"):
        load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    (tmp_path / "fer2013.csv").write_text("label,pixels\n1,2\n")
    with pytest.raises(CorpusError, match=r"lacks column\(s\) \['Usage', 'emotion'\]"):
        load_fer2013(tmp_path, cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------------- image folder


def _make_folders(root: Path, files, split: str | None = None) -> Path:
    base = root / split if split else root
    for folder, count in (("happy", 2), ("Angry", 2), ("neutral", 1), ("contempt", 1)):
        for i in range(count):
            files.png(base / folder / f"S{100 + i:03d}_001_{folder}.png", value=i)
    return root


def test_image_folder_maps_folder_names(tmp_path, files):
    manifest = load_image_folder(_make_folders(tmp_path / "faces", files), corpus="ckplus")
    assert len(manifest) == 6
    counts = manifest[schema.EMOTION].value_counts().to_dict()
    assert counts == {"happiness": 2, "anger": 2, "neutral": 1, "contempt": 1}
    assert set(manifest[schema.CORPUS]) == {"ckplus"}
    assert manifest[schema.OFFICIAL_SPLIT].isna().all()
    assert (manifest[schema.SPEAKER] == manifest[schema.ID]).all()
    assert "happy/S100_001_happy" in set(manifest[schema.ID])


def test_image_folder_mapping_override_drop_and_subject_pattern(tmp_path, files):
    root = _make_folders(tmp_path / "faces", files)
    manifest = load_image_folder(
        root, mapping={"contempt": None, "Happy": "surprise"}, subject_pattern=r"^(S\d{3})_"
    )
    assert set(manifest[schema.EMOTION]) == {"surprise", "anger", "neutral"}
    assert set(manifest[schema.SPEAKER]) == {"S100", "S101"}
    with pytest.raises(CorpusError, match="non-canonical emotion"):
        load_image_folder(root, mapping={"happy": "glee"})


def test_image_folder_split_folders_give_official_split(tmp_path, files):
    root = _make_folders(tmp_path / "faces", files, split="train")
    _make_folders(root, files, split="test")
    files.png(root / "validation" / "sad" / "x.jpg")
    manifest = load_image_folder(root)
    assert manifest[schema.OFFICIAL_SPLIT].value_counts().to_dict() == {"train": 6, "test": 6, "val": 1}
    assert manifest.set_index(schema.ID).loc["validation/sad/x", schema.EMOTION] == "sadness"


def test_image_folder_metadata_gives_subjects_and_groups(tmp_path, files):
    root = _make_folders(tmp_path / "faces", files)
    rows = ["path,subject,gender,age"]
    for path in sorted(root.rglob("*.png")):
        subject = len(rows) % 2
        rows.append(f"{path.relative_to(root).as_posix()},subj{subject},{'female' if subject else 'male'},30")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    manifest = load_image_folder(root, metadata="meta.csv")
    assert set(manifest[schema.SPEAKER]) == {"subj0", "subj1"}
    assert set(manifest["group_gender"]) == {"female", "male"} and set(manifest["group_age"]) == {"30"}
    (root / "meta.csv").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(CorpusError, match="has no row in the metadata CSV"):
        load_image_folder(root, metadata="meta.csv")
    with pytest.raises(CorpusError, match="does not exist"):
        load_image_folder(root, metadata="absent.csv")


def _truncated_png(files, path: Path) -> Path:
    files.png(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("corrupt", "cannot be decoded as an image"),
        ("truncated", "cannot be decoded as an image"),
        ("zero_bytes", "empty file"),
        ("unknown_folder", "class folder 'blah' is not a known emotion name"),
        ("no_class_folder", "is not inside a class folder"),
    ],
)
def test_image_folder_bad_files(tmp_path, files, kind, problem):
    root = _make_folders(tmp_path / "faces", files)
    if kind == "corrupt":
        bad = files.corrupt(root / "happy" / "bad.png")
    elif kind == "truncated":
        bad = _truncated_png(files, root / "happy" / "bad.png")
    elif kind == "zero_bytes":
        bad = root / "happy" / "bad.jpg"
        bad.write_bytes(b"")
    elif kind == "unknown_folder":
        bad = files.png(root / "blah" / "x.png")
    else:
        bad = files.png(root / "loose.png")
    with pytest.raises(CorpusError) as error:
        load_image_folder(root)
    assert str(bad) in str(error.value) and problem in str(error.value)
    manifest = load_image_folder(root, on_error="skip")
    assert len(manifest) == 6
    assert skipped_report(manifest)["file"].tolist() == [str(bad)]
    if kind == "unknown_folder":
        assert "++data.corpus.mapping.blah=" in str(error.value)
        assert len(load_image_folder(root, mapping={"blah": "fear"})) == 7


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(CorpusError, match=r"data\.root=.* does not exist"):
        load_image_folder(tmp_path / "none")
