"""Owns the on-disk layout that Caffe reads, and writing it atomically, one sample at a time.

    DIR/hdf5/{split}.txt              absolute paths of the split's shards (HDF5Data `source`)
    DIR/hdf5/{split}/part-00000.h5    float32 `data` (N, 3, S, S) BGR minus 127.5, float32 `label` (N, 10)
    DIR/lmdb/{split}_images           Datum: 3 x S x S uint8 BGR (`data`), the mean left to transform_param
    DIR/lmdb/{split}_labels           Datum: 10 x 1 x 1 `float_data`, the same keys (%08d) and order
    DIR/{split}.samples.tsv           one row per written sample, in written order

Everything is written under DIR/.partial-<pid>/ and moved into place by `commit()`; the
manifest (written last, by the caller) is what marks a finished build, and `commit()`
removes the old one first. An interrupted build therefore never looks finished. Memory is
bounded: HDF5 rows are flushed every FLUSH_ROWS samples, LMDB commits every FLUSH_ROWS.
"""
import glob
import os
import shutil

import h5py
import numpy as np

from landmarks.conventions.images import to_network

FORMATS = ("hdf5", "lmdb")
FORMAT_CHOICES = ("hdf5", "lmdb", "both")
FLUSH_ROWS = 512  # samples held in memory per split before they go to disk (~14 MB of HDF5 rows at 48 px)
DEFAULT_SHARD_SIZE = 8192  # HDF5Data loads a whole file: 8192 x 27 KB = 226 MB at 48 px
KEY_FORMAT = "%08d"
# Everything a build owns in DIR; a new build replaces all of it (so that switching formats
# cannot leave a stale LMDB beside a fresh HDF5).
OWNED = ("hdf5", "lmdb", "preview.png") + tuple(f"{s}.samples.tsv" for s in ("train", "val", "test"))


def _alive(pid_text):
    """Whether the process that owns a `.partial-<pid>` folder is still running."""
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def formats_of(choice):
    return FORMATS if choice == "both" else (choice,)


class _Hdf5Split:
    def __init__(self, tmp_dir, final_dir, split, size, shard_size, labels):
        self.tmp_dir, self.final_dir, self.split = tmp_dir, final_dir, split
        self.size, self.shard_size, self.labels = size, shard_size, labels
        self.shards, self.count = [], 0
        self.file = None
        self.rows, self.row_labels = [], []
        os.makedirs(os.path.join(tmp_dir, "hdf5", split), exist_ok=True)

    def _open_shard(self):
        name = f"part-{len(self.shards):05d}.h5"
        self.path = os.path.join(self.tmp_dir, "hdf5", self.split, name)
        # No chunk cache: rows go to disk as they are written (the batches are whole chunks
        # but for the last), so a full disk fails the write that hit it, not a later close
        # that cannot write its cache and leaves HDF5 ids that crash the interpreter.
        self.file = h5py.File(self.path, "w", rdcc_nbytes=0)
        s = self.size
        chunk = min(self.shard_size, 64)
        self.data = self.file.create_dataset("data", (0, 3, s, s), maxshape=(self.shard_size, 3, s, s),
                                             dtype="float32", chunks=(chunk, 3, s, s))
        self.label = self.file.create_dataset("label", (0, self.labels), maxshape=(self.shard_size, self.labels),
                                              dtype="float32", chunks=(chunk, self.labels))
        self.shards.append(os.path.join(self.final_dir, "hdf5", self.split, name))

    def _flush(self):
        while self.rows:
            if self.file is None:
                self._open_shard()
            room = self.shard_size - self.data.shape[0]
            take, self.rows = self.rows[:room], self.rows[room:]
            labels, self.row_labels = self.row_labels[:room], self.row_labels[room:]
            n0 = self.data.shape[0]
            self.data.resize(n0 + len(take), axis=0)
            self.label.resize(n0 + len(take), axis=0)
            self.data[n0:] = to_network(np.stack(take))
            self.label[n0:] = np.stack(labels)
            if self.data.shape[0] == self.shard_size:
                self.file.close()
                self.file = None

    def add(self, pixels, label):
        self.rows.append(pixels)
        self.row_labels.append(label)
        self.count += 1
        if len(self.rows) >= FLUSH_ROWS:
            self._flush()

    def close(self):
        self._flush()
        if self.file is not None:
            self.file.close()
            self.file = None
        with open(os.path.join(self.tmp_dir, "hdf5", f"{self.split}.txt"), "w") as fh:
            fh.write("".join(path + "\n" for path in self.shards))

    def abort(self):
        if self.file is not None:
            file, self.file = self.file, None
            # After a failed write (a full disk) the close must still write the file's metadata:
            # empty the doomed file first, giving its space back, so that the close can end.
            os.truncate(self.path, 0)
            file.close()


def _datum_class():
    # Imported only for LMDB output (pycaffe takes a second to import), and by the writer's
    # constructor, before any work starts: an import cut short by Ctrl-C can leave the
    # interpreter half-broken, so it must not happen in the middle of a build.
    from caffe.proto import caffe_pb2
    return caffe_pb2.Datum


class _LmdbSplit:
    def __init__(self, tmp_dir, split, size, labels, expected, datum):
        import lmdb
        self.Datum = datum
        self.size, self.labels, self.count = size, labels, 0
        # LMDB needs its maximum size up front; on Linux the file only grows as written.
        # A B-tree page (4 KB) split by out-of-order keys can hold a single small record: at
        # 24x24 (1.8 KB a record) twice the record size alone ran out with 88,000 samples.
        per_sample = 3 * size * size + 4 * labels + 256
        map_size = max(64 << 20, expected * (2 * per_sample + 4096))
        os.makedirs(os.path.join(tmp_dir, "lmdb"), exist_ok=True)
        self.envs = [lmdb.open(os.path.join(tmp_dir, "lmdb", f"{split}_{kind}"), map_size=map_size,
                               subdir=True, metasync=False, sync=False) for kind in ("images", "labels")]
        self._begin()

    def _begin(self):
        self.txns = [env.begin(write=True) for env in self.envs]

    def add(self, pixels, label):
        key = (KEY_FORMAT % self.count).encode("ascii")
        image = self.Datum(channels=3, height=self.size, width=self.size,
                           data=np.ascontiguousarray(pixels.transpose(2, 0, 1)).tobytes(), label=0)
        target = self.Datum(channels=self.labels, height=1, width=1)
        target.float_data.extend(label.tolist())
        self.txns[0].put(key, image.SerializeToString())
        self.txns[1].put(key, target.SerializeToString())
        self.count += 1
        if self.count % FLUSH_ROWS == 0:
            for txn in self.txns:
                txn.commit()
            self._begin()

    def close(self):
        for txn in self.txns:
            txn.commit()
        for env in self.envs:
            env.sync(True)
            env.close()

    def abort(self):
        for txn in self.txns:
            txn.abort()
        for env in self.envs:
            env.close()


class DatasetWriter:
    """Streams samples of every split into DIR's layout; `commit()` moves it into place.

    `add(split, pixels, label, row)`: pixels uint8 (S, S, 3) BGR, label float32 (10,), row
    the tab-separated fields for `{split}.samples.tsv`. `tsv_header` names the columns."""

    def __init__(self, out_dir, formats, size, shard_size=DEFAULT_SHARD_SIZE, expected=None,
                 tsv_header=(), labels=10):
        if shard_size < 1:
            raise ValueError(f"shard size must be at least 1, got {shard_size}")
        self.out_dir = os.path.abspath(out_dir)
        self.formats, self.size, self.shard_size, self.labels = tuple(formats), size, shard_size, labels
        self.expected = expected or {}
        self.tsv_header = tsv_header
        self.datum = _datum_class() if "lmdb" in self.formats else None
        os.makedirs(self.out_dir, exist_ok=True)
        for stale in glob.glob(os.path.join(self.out_dir, ".partial-*")):
            if not _alive(stale.rsplit("-", 1)[-1]):
                shutil.rmtree(stale, ignore_errors=True)  # left by a killed build
        self.tmp_dir = os.path.join(self.out_dir, f".partial-{os.getpid()}")
        os.makedirs(self.tmp_dir)
        self.splits = {}

    def _split(self, split):
        if split not in self.splits:
            parts = {}
            if "hdf5" in self.formats:
                parts["hdf5"] = _Hdf5Split(self.tmp_dir, self.out_dir, split, self.size, self.shard_size, self.labels)
            if "lmdb" in self.formats:
                parts["lmdb"] = _LmdbSplit(self.tmp_dir, split, self.size, self.labels, self.expected.get(split, 1000),
                                           self.datum)
            tsv = open(os.path.join(self.tmp_dir, f"{split}.samples.tsv"), "w")
            tsv.write("# " + "\t".join(self.tsv_header) + "\n")
            parts["tsv"] = tsv
            self.splits[split] = parts
        return self.splits[split]

    def add(self, split, pixels, label, row):
        if pixels.shape != (self.size, self.size, 3) or pixels.dtype != np.uint8:
            raise ValueError(f"expected uint8 ({self.size}, {self.size}, 3) pixels, got {pixels.dtype} {pixels.shape}")
        label = np.asarray(label, dtype=np.float32).reshape(self.labels)
        parts = self._split(split)
        for fmt in FORMATS:
            if fmt in parts:
                parts[fmt].add(pixels, label)
        parts["tsv"].write("\t".join(str(v) for v in row) + "\n")

    def counts(self):
        return {split: next(p.count for k, p in parts.items() if k != "tsv") for split, parts in self.splits.items()}

    def commit(self):
        """Close everything, then replace DIR's owned outputs with the new ones (and anything
        else the caller put into `self.tmp_dir`, e.g. the preview). Returns the relative paths
        of the files now in place."""
        for parts in self.splits.values():
            for key, part in parts.items():
                part.close()
        manifest = os.path.join(self.out_dir, "manifest.json")
        if os.path.exists(manifest):
            os.remove(manifest)  # from here on, DIR does not look finished until the new one lands
        for name in OWNED:
            target = os.path.join(self.out_dir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        for name in sorted(os.listdir(self.tmp_dir)):
            os.replace(os.path.join(self.tmp_dir, name), os.path.join(self.out_dir, name))
        os.rmdir(self.tmp_dir)
        written = [name for name in OWNED if os.path.isfile(os.path.join(self.out_dir, name))]
        for folder in ("hdf5", "lmdb"):  # not the whole DIR: it may hold anything else
            for root, _, files in os.walk(os.path.join(self.out_dir, folder)):
                written += [os.path.relpath(os.path.join(root, f), self.out_dir) for f in files]
        return sorted(written)

    def abort(self):
        """Throw away everything written so far; DIR's previous outputs stay as they were."""
        for parts in self.splits.values():
            for key, part in parts.items():
                try:
                    part.close() if key == "tsv" else part.abort()
                except Exception:  # already half-closed by the interruption: removing it is all that is left
                    pass
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
