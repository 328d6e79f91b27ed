"""data_prep.dataset and its list readers (data_prep.mtfl, data_prep.sun): layouts detected from
the files present, each list variant (backslashes, leading spaces, attribute columns, face
boxes), bad lines named and skipped, carved splits recorded, and level-1 data built from real
JPEG fixtures in each layout, with points a little outside the image kept."""
import json

import cv2
import numpy as np
import pytest

from data_prep import dataset, level1, readers

SIZE = 80  # MTFL's copy: 80x80 faces
# points (x, y) of a face in an 80x80 image, CelebA's order
FACE = np.array([[30.0, 35.0], [50.0, 35.0], [40.0, 45.0], [32.0, 56.0], [48.0, 56.0]])


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def _mtfl_line(name, points, attributes=False, backslash=False, lead=""):
    name = name.replace("/", "\\") if backslash else name
    coords = " ".join(f"{v:g}" for v in points[:, 0]) + " " + " ".join(f"{v:g}" for v in points[:, 1])
    return f"{lead}{name} {coords}" + (" 1 2 1 3" if attributes else "")


def _sun_line(name, points, box=(20, 60, 25, 65), backslash=False):
    name = name.replace("/", "\\") if backslash else name
    return f"{name} " + " ".join(f"{v:g}" for v in box) + " " + " ".join(f"{v:g}" for v in points.reshape(-1))


def _images(root, count, folder="lfw_5590"):
    names = [f"{folder}/face_{i:03d}.jpg" for i in range(count)]
    for i, name in enumerate(names):
        _jpeg(root / name, i)
    return names


def _shifted(i):
    return FACE + np.array([i % 5 - 2, i % 3 - 1], dtype=np.float64)


def test_mtfl_original_variants_read_alike(tmp_path):
    """Slashes or backslashes, leading spaces, with or without the four attribute columns:
    the same entries (names '/'-separated, x block then y block read as (x, y) pairs)."""
    names = _images(tmp_path, 6)
    lines = [_mtfl_line(n, _shifted(i), attributes=i % 2 == 0, backslash=i % 3 == 0, lead=" " * (i % 2))
             for i, n in enumerate(names)]
    (tmp_path / "training.txt").write_text("\n".join(lines) + "\n")
    assert readers.detect(tmp_path) == "mtfl"
    ds = readers.load(tmp_path, seed=3)
    assert ds.format == "mtfl" and ds.problems == [] and not ds.has_boxes
    assert sorted(e.name for e in ds.entries) == names
    by_name = {e.name: e for e in ds.entries}
    for i, name in enumerate(names):
        np.testing.assert_allclose(by_name[name].points, _shifted(i))
        assert by_name[name].source == str(tmp_path / "training.txt") and by_name[name].line == i + 1
    assert ds.image_path(names[0]) == str(tmp_path / "lfw_5590" / "face_000.jpg")


def test_bad_list_lines_are_named_and_skipped(tmp_path):
    names = _images(tmp_path, 4)
    good = [_mtfl_line(n, FACE) for n in names]
    bad = ["lfw_5590/short.jpg 1 2 3",
           "lfw_5590/text.jpg 30 50 40 32 48 35 35 x 56 56",
           "lfw_5590/attr.jpg 30 50 40 32 48 35 35 45 56 56 1 two 1 1",
           "..\\escape.jpg 30 50 40 32 48 35 35 45 56 56",
           "/etc/abs.jpg 30 50 40 32 48 35 35 45 56 56",
           good[0]]
    path = tmp_path / "training.txt"
    path.write_text("\n".join(good + bad) + "\n")
    ds = readers.load(tmp_path)
    assert len(ds.entries) == 4
    got = {(p.kind, p.line) for p in ds.problems}
    assert got == {("wrong number of fields", 5), ("non-numeric value", 6), ("bad attribute column", 7),
                   ("unsafe image name", 8), ("unsafe image name", 9), ("duplicate name", 10)}
    assert str(next(p for p in ds.problems if p.line == 6)) == f"{path}:6: lfw_5590/text.jpg: non-numeric value ('x')"


def test_sun_lists_keep_the_face_box_and_use_the_test_list(tmp_path):
    names = _images(tmp_path, 12, folder="net_7876")
    train = [_sun_line(n, _shifted(i), backslash=True) for i, n in enumerate(names[:9])]
    train.append("net_7876\\badbox.jpg 60 20 25 65 " + " ".join(f"{v:g}" for v in FACE.reshape(-1)))
    (tmp_path / "trainImageList.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "testImageList.txt").write_text(
        "\n".join(_sun_line(n, FACE, box=(10, 70, 12, 72)) for n in names[9:]) + "\n")
    assert readers.detect(tmp_path) == "sun"
    ds = readers.load(tmp_path, seed=1)
    assert ds.has_boxes and [(p.kind, p.line) for p in ds.problems] == [("bad face box", 10)]
    test = ds.split("test")
    assert [e.name for e in test] == names[9:] and all(e.box == (10.0, 12.0, 70.0, 72.0) for e in test)
    assert {e.source for e in test} == {str(tmp_path / "testImageList.txt")}
    train_e = {e.name: e for e in ds.entries if e.split != "test"}
    assert train_e[names[0]].box == (20.0, 25.0, 60.0, 65.0)
    np.testing.assert_allclose(train_e[names[4]].points, _shifted(4))
    # 8:1 of the training list goes to train:val (the 80/10 proportion), the test list is test
    assert (len(ds.split("train")), len(ds.split("val"))) == (8, 1)
    assert ds.split_record["method"].startswith("test list") and ds.split_record["counts"]["test"] == 3
    assert set(readers.input_files(tmp_path)) == {"train_list", "test_list"}


def test_carved_split_is_seeded_80_10_10_and_recorded(tmp_path):
    lines = [_mtfl_line(f"a/img_{i:03d}.jpg", FACE) for i in range(100)]
    (tmp_path / "training.txt").write_text("\n".join(lines) + "\n")
    a, b, c = (readers.load(tmp_path, seed=s) for s in (5, 5, 6))
    splits = lambda ds: [e.split for e in ds.entries]  # noqa: E731
    assert splits(a) == splits(b) != splits(c)
    assert (splits(a).count("train"), splits(a).count("val"), splits(a).count("test")) == (80, 10, 10)
    assert a.split_record == {"method": "carved from training.txt", "seed": 5, "train_fraction": 0.8,
                              "val_fraction": 0.1, "test_fraction": 0.1,
                              "counts": {"train": 80, "val": 10, "test": 10}}
    d = readers.load(tmp_path, seed=5, train_fraction=0.7, val_fraction=0.2)
    assert splits(d).count("val") == 20


def test_detection_and_forcing_the_layout(tmp_path):
    with pytest.raises(dataset.DataError, match="no such dataset folder"):
        readers.detect(tmp_path / "nowhere")
    with pytest.raises(dataset.DataError, match="no dataset found"):
        readers.detect(tmp_path)
    (tmp_path / "training.txt").write_text(_mtfl_line("x/a.jpg", FACE) + "\n")
    (tmp_path / "trainImageList.txt").write_text(_sun_line("x/a.jpg", FACE) + "\n")
    with pytest.raises(dataset.DataError, match="several layouts .*mtfl, sun.*--dataset-format"):
        readers.detect(tmp_path)
    assert readers.load(tmp_path, "sun").format == "sun" and readers.load(tmp_path, "mtfl").format == "mtfl"
    with pytest.raises(dataset.DataError, match="not in the celeba layout"):
        readers.load(tmp_path, "celeba")


def test_outside_margin_rule():
    inside, w, h = FACE.copy(), 80, 80
    assert dataset.outside_image(inside, w, h) == 0
    near = inside.copy()
    near[0, 1] = -7.5  # MTFL's worst: 9.4% of the height above the image
    assert dataset.outside_image(near, w, h) == 1
    near[0, 1] = 79 + 7.9
    assert dataset.outside_image(near, w, h) == 1
    far = inside.copy()
    far[2, 0] = -8.5  # beyond 10% of the width
    assert dataset.outside_image(far, w, h) == 2
    assert dataset.outside_image(far, 100, 80) == 1  # the margin scales with the side


@pytest.mark.parametrize("layout", ["mtfl", "sun"])
def test_level1_data_from_each_list_layout(tmp_path, layout, capsys):
    root = tmp_path / "root"
    names = _images(root, 20)
    rows = [_shifted(i) for i in range(20)]
    rows[3] = FACE.copy()
    rows[3][0, 1] = -7.5  # a face cut by the frame: kept, counted in the notes
    rows[5] = FACE.copy()
    rows[5][4, 0] = 95.0  # 16 px beyond an 80 px image: skipped, named by file:line
    (root / names[7]).write_bytes(b"")  # a zero-byte image: skipped
    if layout == "mtfl":
        text = [_mtfl_line(n, p, attributes=True, backslash=True, lead=" ") for n, p in zip(names, rows)]
        list_file = root / "training.txt"
    else:
        text = [_sun_line(n, p, backslash=True) for n, p in zip(names, rows)]
        list_file = root / "trainImageList.txt"
    list_file.write_text("\n".join(text) + "\n")
    out = tmp_path / "l1"
    assert level1.main(["--dataset", str(root), "--out", str(out), "--quiet", "--workers", "1", "--seed", "2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["skipped_by_kind"] == {"point outside the image": 1, "zero-byte file": 1}
    assert counts["notes"] == {dataset.OUTSIDE_NOTE: 1}
    assert sum(counts["written"].values()) == 18 and counts["tasks"] == {"train": 16, "val": 2, "test": 2}
    skip = next(s for s in manifest["skipped"] if s["kind"] == "point outside the image")
    assert (skip["file"], skip["line"], skip["name"]) == (str(list_file), 6, names[5])
    assert manifest["source"]["format"] == layout and manifest["options"]["dataset_format"] == layout
    assert manifest["source"]["split"]["method"] == f"carved from {list_file.name}"
    rows_written = [line.split("\t") for s in ("train", "val", "test")
                    for line in (out / f"{s}.samples.tsv").read_text().splitlines()[1:]]
    kept = next(r for r in rows_written if r[0] == names[3])
    assert float(kept[4]) == -7.5  # y1 as labelled, not clipped
    assert f"{list_file}:6: {names[5]}: point outside the image" in capsys.readouterr().err
    # forcing the other layout is refused with one line, exit status 2
    other = "sun" if layout == "mtfl" else "mtfl"
    assert level1.main(["--dataset", str(root), "--dataset-format", other, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert f"not in the {other} layout" in capsys.readouterr().err
