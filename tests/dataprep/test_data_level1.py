"""data_prep.level1 end to end on a small synthetic CelebA: layout, formats agree, labels,
shuffling, reuse, every kind of bad input, and interruption."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import h5py
import lmdb
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from PIL import Image

from data_prep import build, level1, synthetic
from landmarks.conventions.labels import as_points, normalise

COUNT = 24  # 19 train, 2 val, 3 test


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "celeba"
    synthetic.generate(root, COUNT, seed=3, workers=1, progress=False)
    return root


@pytest.fixture
def root_copy(celeba_root, tmp_path):
    root = tmp_path / "celeba"
    shutil.copytree(celeba_root, root)
    return root


def read_hdf5(out, split):
    paths = (out / "hdf5" / f"{split}.txt").read_text().split()
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in paths)
    data, label = [], []
    for p in paths:
        with h5py.File(p, "r") as f:
            assert f["data"].dtype == np.float32 and f["label"].dtype == np.float32
            data.append(f["data"][...])
            label.append(f["label"][...])
    return np.concatenate(data), np.concatenate(label), paths


def read_lmdb(out, split):
    images, labels, keys = [], [], []
    with lmdb.open(str(out / "lmdb" / f"{split}_images"), readonly=True, lock=False) as env_i, \
            lmdb.open(str(out / "lmdb" / f"{split}_labels"), readonly=True, lock=False) as env_l:
        with env_i.begin() as ti, env_l.begin() as tl:
            assert list(ti.cursor().iternext(values=False)) == list(tl.cursor().iternext(values=False))
            for key, value in ti.cursor():
                d = caffe_pb2.Datum.FromString(value)
                assert (d.channels, d.height, d.width) == (3, 48, 48)
                images.append(np.frombuffer(d.data, np.uint8).reshape(3, 48, 48))
                l = caffe_pb2.Datum.FromString(tl.get(key))
                assert (l.channels, l.height, l.width) == (10, 1, 1)
                labels.append(np.array(l.float_data, np.float32))
                keys.append(key.decode())
    return np.stack(images), np.stack(labels), keys


def read_tsv(out, split):
    lines = (out / f"{split}.samples.tsv").read_text().splitlines()
    assert lines[0].startswith("# name\twidth\theight\tx1")
    return [line.split("\t") for line in lines[1:]]


def run(root, out, *extra):
    return level1.main(["--dataset", str(root), "--out", str(out), "--quiet", *extra])


def test_layout_formats_and_labels(celeba_root, tmp_path):
    out = tmp_path / "l1"
    assert run(celeba_root, out, "--format", "both", "--shard-size", "8", "--workers", "2") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["written"] == {"train": 19, "val": 2, "test": 3}
    assert manifest["counts"]["skipped"] == 0
    assert (out / "preview.png").is_file()
    for split, n in manifest["counts"]["written"].items():
        data, label, shards = read_hdf5(out, split)
        assert data.shape == (n, 3, 48, 48) and label.shape == (n, 10)
        assert len(shards) == -(-n // 8)  # shards of at most 8
        images, labels, keys = read_lmdb(out, split)
        assert keys == [f"{i:08d}" for i in range(n)]
        # same samples, same order: HDF5 holds the uint8 image minus 127.5
        np.testing.assert_array_equal(data, images.astype(np.float32) - 127.5)
        np.testing.assert_array_equal(label, labels)
        rows = read_tsv(out, split)
        assert len(rows) == n
        for row, lab in zip(rows, label):
            w, h = int(row[1]), int(row[2])
            gt = as_points(np.array(row[3:13], float))
            np.testing.assert_allclose(lab, normalise(gt, w, h).reshape(-1), atol=1e-6)
            assert row[13:] == ["0", "-"]
        # each sample is the whole image resized, as the inference path makes it
        first = os.path.join(manifest["source"]["image_dir"], rows[0][0])
        from landmarks.conventions.images import read_level1
        np.testing.assert_array_equal(read_level1(first)[0], data[0])
    # training order is shuffled; val and test keep CelebA order
    train_names = [r[0] for r in read_tsv(out, "train")]
    assert train_names != sorted(train_names)
    test_names = [r[0] for r in read_tsv(out, "test")]
    assert test_names == sorted(test_names)


def test_same_seed_same_bytes_and_worker_count_does_not_matter(celeba_root, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run(celeba_root, a, "--seed", "1", "--workers", "1") == 0
    assert run(celeba_root, b, "--seed", "1", "--workers", "2") == 0
    assert run(celeba_root, c, "--seed", "2", "--workers", "2") == 0
    da, la, _ = read_hdf5(a, "train")
    db, lb, _ = read_hdf5(b, "train")
    dc, _, _ = read_hdf5(c, "train")
    np.testing.assert_array_equal(da, db)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(da, dc)
    assert sorted(r[0] for r in read_tsv(a, "train")) == sorted(r[0] for r in read_tsv(c, "train"))


def test_rerun_reuses_the_manifest_and_does_no_work(celeba_root, tmp_path, capsys):
    out = tmp_path / "l1"
    assert run(celeba_root, out) == 0
    shard = out / "hdf5" / "train" / "part-00000.h5"
    stamp = shard.stat().st_mtime_ns
    manifest = (out / "manifest.json").read_text()
    capsys.readouterr()
    assert run(celeba_root, out) == 0
    assert "up to date" in capsys.readouterr().out
    assert shard.stat().st_mtime_ns == stamp and (out / "manifest.json").read_text() == manifest
    # a changed option or a missing output means a rebuild
    assert run(celeba_root, out, "--seed", "9") == 0
    assert shard.stat().st_mtime_ns != stamp
    os.remove(out / "test.samples.tsv")
    capsys.readouterr()
    assert run(celeba_root, out, "--seed", "9") == 0
    assert "up to date" not in capsys.readouterr().out and (out / "test.samples.tsv").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["landmarks"]["sha256"] and manifest["inputs"]["partition"]["sha256"]
    assert all(len(v["sha256"]) == 64 for v in manifest["outputs"].values())


def test_every_kind_of_bad_input_is_skipped_and_counted(root_copy, tmp_path, capsys):
    images = root_copy / "Img" / "img_celeba"
    landmarks = root_copy / "Anno" / "list_landmarks_celeba.txt"
    partition = root_copy / "Eval" / "list_eval_partition.txt"
    lines = landmarks.read_text().splitlines()
    entries = {line.split()[0]: line for line in lines[2:]}
    names = sorted(entries)
    # image files: missing, truncated, zero bytes, corrupt; grey and 4-channel ones are converted
    os.remove(images / names[0])
    data = (images / names[1]).read_bytes()
    (images / names[1]).write_bytes(data[:len(data) // 3])
    (images / names[2]).write_bytes(b"")
    (images / names[3]).write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    Image.open(images / names[4]).convert("L").save(images / names[4], quality=90)
    Image.open(images / names[5]).convert("RGBA").save(images / names[5], format="PNG")  # PNG named .jpg
    # annotation lines: wrong field count, non-numeric, a point outside the image, unsafe names
    w, h = Image.open(images / names[6]).size
    fields = entries[names[6]].split()
    fields[1] = str(w - 1 + 0.11 * w)  # beyond data_prep.dataset.OUTSIDE_MARGIN (10% of the width): skipped
    entries[names[6]] = " ".join(fields)
    kept = entries[names[12]].split()  # a face cut by the frame, within the margin: kept and counted
    kept[2] = str(-0.09 * Image.open(images / names[12]).size[1])
    entries[names[12]] = " ".join(kept)
    entries[names[7]] = entries[names[7]].rsplit(" ", 1)[0]
    entries[names[8]] = entries[names[8]].replace(" ", " x", 1)
    outside = tmp_path / "secret.jpg"
    shutil.copy(images / names[9], outside)
    body = [entries[n] for n in names]
    body += ["../../secret.jpg " + " ".join(fields[1:]), "sub/" + names[10] + " " + " ".join(fields[1:])]
    # partition mismatches both ways: one annotated image without a split, one split without annotation
    part = [line for line in partition.read_text().splitlines() if not line.startswith(names[11])]
    part.append("999999.jpg 0")
    partition.write_text("\n".join(part) + "\n")
    landmarks.write_text("\n".join([str(len(body)), lines[1]] + body) + "\n")

    out = tmp_path / "l1"
    assert run(root_copy, out, "--format", "both", "--workers", "2") == 0
    err = capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    kinds = manifest["counts"]["skipped_by_kind"]
    assert kinds == {"missing image": 1, "truncated JPEG": 1, "zero-byte file": 1, "corrupt image": 1,
                     "point outside the image": 1, "wrong number of fields": 1, "non-numeric value": 1,
                     "unsafe image name": 2, "not in the partition file": 1, "not in the landmark file": 1}
    assert manifest["counts"]["notes"] == {"converted from L": 1, "converted from RGBA": 1,
                                           "point outside the image, within the margin (kept)": 1}
    assert sum(manifest["counts"]["written"].values()) == COUNT - 8
    # each skip names its file (and line, for annotation problems)
    by_name = {s["name"]: s for s in manifest["skipped"]}
    assert by_name[names[0]]["file"] == str(images / names[0])
    assert by_name[names[7]]["file"] == str(landmarks) and by_name[names[7]]["line"] == 3 + 7
    assert by_name["../../secret.jpg"]["kind"] == "unsafe image name"
    assert by_name["999999.jpg"]["file"] == str(partition)
    assert f"{landmarks}:{3 + 8}: {names[8]}: non-numeric value" in err
    written = {r[0] for s in ("train", "val", "test") for r in read_tsv(out, s)}
    assert names[4] in written and names[5] in written and names[12] in written and not written & set(names[:4] + names[6:9] + [names[11]])
    for split in ("train", "val", "test"):
        data, _, _ = read_hdf5(out, split)
        assert len(read_lmdb(out, split)[2]) == len(data)


def test_fatal_input_is_refused_without_output(tmp_path, capsys):
    out = tmp_path / "l1"
    assert run(tmp_path / "missing", out) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()
    with pytest.raises(SystemExit):
        level1.main(["--help"])


def test_interruption_keeps_the_previous_build(celeba_root, tmp_path, monkeypatch):
    out = tmp_path / "l1"
    assert run(celeba_root, out) == 0
    before = (out / "manifest.json").read_text()
    real, calls = build.make_sample, []

    def interrupted(task, settings):
        calls.append(task)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(task, settings)

    monkeypatch.setattr(build, "make_sample", interrupted)
    assert run(celeba_root, out, "--seed", "4", "--workers", "1") == 130
    assert (out / "manifest.json").read_text() == before  # the old build, intact and still current
    assert not [p for p in os.listdir(out) if p.startswith(".partial")]
    assert run(celeba_root, out) == 0  # nothing to do


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, "2"), (signal.SIGKILL, "1")])
def test_interrupted_or_killed_run_leaves_nothing_that_looks_finished(celeba_root, tmp_path, sig, workers):
    out = tmp_path / "l1"
    # so many augmented copies that the build is still running when the signal comes, even
    # on a quiet machine (300 copies could finish within the wait below)
    proc = subprocess.Popen([sys.executable, "-m", "data_prep.level1", "--celeba", str(celeba_root), "--out", str(out),
                             "--quiet", "--workers", workers, "--augment", "5000", "--format", "both"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (out.exists() and any(p.startswith(".partial") for p in os.listdir(out))):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, "the build finished before it could be interrupted: give it more work"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert not (out / "manifest.json").exists() and not (out / "hdf5").exists()
    if sig == signal.SIGINT:  # a clean stop: message, exit status 130, no leftovers
        assert proc.returncode == 130 and "interrupted; nothing was written" in err
        assert os.listdir(out) == []
    # the next build clears any leftovers and finishes
    assert run(celeba_root, out) == 0
    assert not [p for p in os.listdir(out) if p.startswith(".partial")]
    assert cv2.imread(str(out / "preview.png")) is not None


def _image_dir(root):
    from data_prep.celeba import locate

    return locate(str(root))[0]


def test_no_training_samples_is_an_error_not_a_finished_build(root_copy, tmp_path, capsys):
    """Issue 11, wrong result 4: images that cannot be read (here: every file emptied, as root
    ignores permission bits) gave 0 samples and a manifest that counted as finished."""
    images = _image_dir(root_copy)
    saved = {}
    for name in os.listdir(images):
        saved[name] = open(os.path.join(images, name), "rb").read()
        open(os.path.join(images, name), "wb").close()
    out = tmp_path / "l1"
    assert run(root_copy, out) == 2
    err = capsys.readouterr().err
    assert "no training samples written" in err and "Traceback" not in err
    assert not (out / "manifest.json").exists() and not (out / "hdf5").exists()
    for name, data in saved.items():  # the user mends the images: the next run builds
        open(os.path.join(images, name), "wb").write(data)
    assert run(root_copy, out) == 0 and (out / "manifest.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder without its x bit; the emptied-files test covers root")
def test_an_image_folder_without_permission_is_an_error(root_copy, tmp_path, capsys):
    images = _image_dir(root_copy)
    os.chmod(images, 0o600)
    try:
        assert run(root_copy, tmp_path / "l1") == 2
    finally:
        os.chmod(images, 0o755)
    assert "no training samples written" in capsys.readouterr().err
    assert run(root_copy, tmp_path / "l1") == 0


def test_the_build_key_holds_the_image_folders_state_and_force_rebuilds(root_copy, tmp_path, capsys):
    out = tmp_path / "l1"
    assert run(root_copy, out) == 0
    assert run(root_copy, out) == 0 and "up to date" in capsys.readouterr().out
    images = _image_dir(root_copy)
    os.chmod(images, 0o700)  # a permission fix (or images added/removed) is a new input
    assert run(root_copy, out) == 0 and "up to date" not in capsys.readouterr().out
    assert run(root_copy, out, "--force") == 0 and "up to date" not in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["images"]["mode"] == "0o700"


def test_a_moved_data_folder_is_not_current(celeba_root, tmp_path, capsys):
    out = tmp_path / "l1"
    assert run(celeba_root, out) == 0
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    capsys.readouterr()
    assert run(celeba_root, moved) == 0
    assert "up to date" not in capsys.readouterr().out  # rebuilt: its lists named the old folder
    _, _, paths = read_hdf5(moved, "train")
    assert all(p.startswith(str(moved) + os.sep) for p in paths)
