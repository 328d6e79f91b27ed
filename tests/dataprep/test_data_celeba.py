"""data_prep.celeba: layouts, header/no-header files, bad lines, partition mismatches, splits."""
import os

import numpy as np
import pytest

from data_prep import celeba

HEADER = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
POINTS = "10 10 20 10 15 15 11 20 19 20"


def _write_root(root, names, splits, header=True, layout="tree", variant="wild", extra_lines=(), partition=None):
    image_folder, landmark_name = celeba.VARIANTS[variant]
    if layout == "tree":
        images, anno, evald = root / "Img" / image_folder, root / "Anno", root / "Eval"
    elif layout == "flat":
        images, anno, evald = root / image_folder, root, root
    else:  # images directly in the root too
        images, anno, evald = root, root, root
    for d in (images, anno, evald):
        d.mkdir(parents=True, exist_ok=True)
    for name in names:
        (images / name).write_bytes(b"not decoded by these tests")
    lines = [f"{name} {POINTS}" for name in names] + list(extra_lines)
    if header:
        lines = [str(len(lines)), HEADER] + lines
    (anno / landmark_name).write_text("\n".join(lines) + "\n")
    part = partition if partition is not None else [f"{n} {s}" for n, s in zip(names, splits)]
    (evald / celeba.PARTITION_FILE).write_text("\n".join(part) + "\n")
    return anno / landmark_name


NAMES = [f"{i:06d}.jpg" for i in range(1, 11)]
SPLITS = [0] * 6 + [1] * 2 + [2] * 2


@pytest.mark.parametrize("layout", ["tree", "flat", "images-in-root"])
@pytest.mark.parametrize("header", [True, False])
def test_layouts_and_optional_header_give_the_same_entries(tmp_path, layout, header):
    _write_root(tmp_path, NAMES, SPLITS, header=header, layout=layout)
    ds = celeba.load(tmp_path)
    assert [e.name for e in ds.entries] == NAMES
    assert [e.split for e in ds.entries] == ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    assert ds.problems == [] and ds.warnings == []
    np.testing.assert_array_equal(ds.entries[0].points, [[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]])
    assert ds.entries[0].line == (3 if header else 1)
    assert os.path.isfile(ds.image_path(NAMES[0]))


def test_aligned_variant(tmp_path):
    _write_root(tmp_path, NAMES, SPLITS, variant="align")
    ds = celeba.load(tmp_path, variant="align")
    assert ds.image_dir.endswith("img_align_celeba") and len(ds.entries) == 10
    with pytest.raises(celeba.DataError, match="list_landmarks_celeba.txt"):
        celeba.load(tmp_path, variant="wild")


def test_bad_lines_are_skipped_with_file_and_line(tmp_path):
    extra = [
        "short.jpg 1 2 3",
        "text.jpg 10 10 20 ten 15 15 11 20 19 20",
        "inf.jpg 10 10 20 10 15 15 11 20 19 nan",
        f"../escape.jpg {POINTS}",
        f"sub/dir.jpg {POINTS}",
        f"..\\win.jpg {POINTS}",
        f"{NAMES[0]} {POINTS}",  # duplicate
    ]
    landmarks = _write_root(tmp_path, NAMES, SPLITS, extra_lines=extra)
    ds = celeba.load(tmp_path)
    assert len(ds.entries) == 10
    got = {(p.name, p.kind, p.line) for p in ds.problems}
    assert got == {
        ("short.jpg", "wrong number of fields", 13), ("text.jpg", "non-numeric value", 14),
        ("inf.jpg", "non-numeric value", 15), ("../escape.jpg", "unsafe image name", 16),
        ("sub/dir.jpg", "unsafe image name", 17), ("..\\win.jpg", "unsafe image name", 18),
        (NAMES[0], "duplicate name", 19)}
    assert all(p.file == str(landmarks) for p in ds.problems)
    assert f"{landmarks}:14: text.jpg: non-numeric value ('ten')" == str(next(p for p in ds.problems if p.line == 14))


def test_partition_and_landmark_mismatches_both_ways(tmp_path):
    partition = [f"{n} {s}" for n, s in zip(NAMES[1:], SPLITS[1:])]  # NAMES[0] has no split
    partition += ["999999.jpg 0", f"{NAMES[5]}", "extra.jpg 7"]  # unknown image, short line, bad code
    landmarks = _write_root(tmp_path, NAMES, SPLITS, partition=partition)
    ds = celeba.load(tmp_path)
    assert [e.name for e in ds.entries] == NAMES[1:]
    part_file = str(tmp_path / "Eval" / celeba.PARTITION_FILE)
    got = {(p.kind, p.file, p.line, p.name) for p in ds.problems}
    assert got == {
        ("not in the partition file", str(landmarks), 3, NAMES[0]),
        ("not in the landmark file", part_file, 10, "999999.jpg"),
        ("wrong number of fields", part_file, 11, NAMES[5]),
        ("bad partition value", part_file, 12, "extra.jpg"),
    }


def test_count_line_disagreement_is_a_warning(tmp_path):
    landmarks = _write_root(tmp_path, NAMES, SPLITS)
    text = landmarks.read_text().splitlines()
    text[0] = "12"
    landmarks.write_text("\n".join(text) + "\n")
    ds = celeba.load(tmp_path)
    assert len(ds.entries) == 10 and ds.problems == []
    assert "says 12" in ds.warnings[0]


def test_random_split_is_reproducible_and_ignores_the_partition(tmp_path):
    names = [f"{i:06d}.jpg" for i in range(1, 101)]
    _write_root(tmp_path, names, [0] * 100, partition=[])  # an empty partition file does not matter
    a = celeba.load(tmp_path, split="random", seed=5)
    b = celeba.load(tmp_path, split="random", seed=5)
    c = celeba.load(tmp_path, split="random", seed=6)
    splits = lambda ds: [e.split for e in ds.entries]  # noqa: E731
    assert splits(a) == splits(b) != splits(c)
    assert splits(a).count("train") == 80 and splits(a).count("test") == 20
    d = celeba.load(tmp_path, split="random", seed=5, train_fraction=0.7, val_fraction=0.1)
    assert (splits(d).count("train"), splits(d).count("val"), splits(d).count("test")) == (70, 10, 20)
    assert a.partition_file == "" and a.problems == []


def test_limit_keeps_every_split(tmp_path):
    _write_root(tmp_path, NAMES, SPLITS)
    ds = celeba.load(tmp_path, limit=5)
    splits = [e.split for e in ds.entries]
    assert len(splits) == 5 and set(splits) == {"train", "val", "test"}
    assert [e.name for e in ds.entries if e.split == "train"] == NAMES[:len([s for s in splits if s == "train"])]


def test_fatal_conditions_are_refused_with_the_path(tmp_path):
    with pytest.raises(celeba.DataError, match="no such dataset folder"):
        celeba.load(tmp_path / "nowhere")
    (tmp_path / "Anno").mkdir()
    with pytest.raises(celeba.DataError, match="list_landmarks_celeba.txt"):
        celeba.load(tmp_path)
    _write_root(tmp_path, NAMES, SPLITS)
    os.remove(tmp_path / "Eval" / celeba.PARTITION_FILE)
    with pytest.raises(celeba.DataError, match="split random"):
        celeba.load(tmp_path)
    assert len(celeba.load(tmp_path, split="random").entries) == 10
    (tmp_path / "Anno" / "list_landmarks_celeba.txt").write_text("2\n" + HEADER + "\nbad 1 2\n")
    with pytest.raises(celeba.DataError, match="no usable entries"):
        celeba.load(tmp_path, split="random")


def test_a_bad_partition_value_is_one_skip_not_two(tmp_path):
    part = [f"{n} {s}" for n, s in zip(NAMES, SPLITS)]
    part[3] = f"{NAMES[3]} 7"
    _write_root(tmp_path, NAMES, SPLITS, partition=part)
    ds = celeba.load(tmp_path)
    about = [p for p in ds.problems if p.name == NAMES[3]]
    assert [p.kind for p in about] == ["bad partition value"] and len(ds.entries) == 9


def test_double_dots_inside_a_name_are_a_plain_name(tmp_path):
    names = NAMES[:9] + ["a..b.jpg"]
    _write_root(tmp_path, names, SPLITS)
    ds = celeba.load(tmp_path)
    assert "a..b.jpg" in [e.name for e in ds.entries] and ds.problems == []
    assert celeba.unsafe_name("..") and celeba.unsafe_name("../a.jpg") and not celeba.unsafe_name("a..b.jpg")


@pytest.mark.parametrize("header", [True, False])
def test_a_utf8_byte_order_mark_costs_no_entry(tmp_path, header):
    landmarks = _write_root(tmp_path, NAMES, SPLITS, header=header)
    landmarks.write_bytes(b"\xef\xbb\xbf" + landmarks.read_bytes())
    partition = tmp_path / "Eval" / celeba.PARTITION_FILE
    partition.write_bytes(b"\xef\xbb\xbf" + partition.read_bytes())
    ds = celeba.load(tmp_path)
    assert [e.name for e in ds.entries] == NAMES and ds.problems == [] and ds.warnings == []
