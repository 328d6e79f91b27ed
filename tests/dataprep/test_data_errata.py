"""data_prep.errata: the MTFL-80 copy's net_7876/_* labels sit a third of the image height too
high; they are moved down where (and only where) the erratum's test holds, the fix is
announced, --no-errata keeps them as given, and the build key tells the two apart."""
import json

import cv2
import numpy as np

from data_prep import level1, readers

SIZE = 80
FACE = np.array([[30.0, 35.0], [50.0, 35.0], [40.0, 45.0], [32.0, 56.0], [48.0, 56.0]])
HIGH = FACE - [0, SIZE / 3]  # the erratum: eyes at y = 8.3, in the top sixth (13.3 px)


def _root(tmp_path):
    rows = [("net_7876/_0_1_0.jpg", HIGH),  # the erratum
            ("net_7876/_20_2_0.jpg", FACE),  # its group, but labelled right: left alone
            ("net_7876/3_0_0.jpg", HIGH),  # high eyes outside the group: a real label, left alone
            ("lfw_5590/a_0001.jpg", FACE)] * 3
    lines = []
    for i, (name, points) in enumerate(rows):
        name = name.replace(".jpg", f"_{i}.jpg")
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 90 + i, np.uint8))
        lines.append(name + " " + " ".join(f"{v:g}" for v in points[:, 0]) + " " + " ".join(f"{v:g}" for v in points[:, 1]))
    (tmp_path / "training.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_only_the_erratum_is_moved(tmp_path):
    root = _root(tmp_path)
    data = readers.load(str(root), split="random", seed=1)
    by_name = {e.name: e.points for e in data.entries}
    for name, points in by_name.items():
        if "/_0_" in name:
            np.testing.assert_allclose(points, FACE, atol=1e-3)  # moved down by 80 / 3
        elif "/3_0_0" in name:
            np.testing.assert_allclose(points, HIGH, atol=1e-3)
        else:
            np.testing.assert_allclose(points, FACE)
    assert any("errata" in w and "3 labels corrected" in w for w in data.warnings)
    as_given = readers.load(str(root), split="random", seed=1, errata=False)
    assert not any("errata" in w for w in as_given.warnings)
    assert sum(np.allclose(e.points, HIGH, atol=1e-3) for e in as_given.entries) == 6


def test_level1_build_applies_it_and_no_errata_is_another_build(tmp_path, capsys):
    root = _root(tmp_path / "mtfl")
    out = tmp_path / "l1"
    assert level1.main(["--dataset", str(root), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    assert "3 labels corrected" in capsys.readouterr().err
    key = json.loads((out / "manifest.json").read_text())
    rows = [r.split("\t") for s in ("train", "val", "test")
            for r in (out / f"{s}.samples.tsv").read_text().splitlines()[1:]]
    fixed = [r for r in rows if "/_0_" in r[0]]
    assert fixed and all(abs(float(r[4]) - FACE[0, 1]) < 1e-3 for r in fixed)  # y1 in original pixels
    assert level1.main(["--dataset", str(root), "--out", str(out), "--quiet", "--workers", "1", "--no-errata"]) == 0
    assert "up to date" not in capsys.readouterr().out  # a different build: rebuilt
    rows = [r.split("\t") for s in ("train", "val", "test")
            for r in (out / f"{s}.samples.tsv").read_text().splitlines()[1:]]
    assert all(abs(float(r[4]) - HIGH[0, 1]) < 1e-3 for r in rows if "/_0_" in r[0])
    assert json.loads((out / "manifest.json").read_text()) != key
