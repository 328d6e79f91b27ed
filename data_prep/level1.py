"""Level-1 data: every image resized whole to S x S, labels normalised by the image size.

    python -m data_prep.level1 --dataset ROOT --out DIR --format hdf5|lmdb|both [options]

Writes DIR in the layout of `data_prep.writers` (HDF5 shards + list files and/or LMDB pairs,
`{split}.samples.tsv`, `preview.png`, `manifest.json`). Rerunning with the same inputs and
options finds the manifest current and does nothing.
"""
import argparse
import dataclasses
import sys

from data_prep import build


def tasks_for(dataset):
    """One task per entry, in list order."""
    return [build.Task(e.split, i, e.name, dataset.image_path(e.name), e.points, e.line, e.source)
            for i, e in enumerate(dataset.entries)]


def build_level1(args):
    """Build (or find current) the level-1 data folder; returns the manifest dict, or None
    when it was already current."""
    inputs = build.resolve_dataset(args)
    _, record, current = build.preflight(args, 1, inputs, image_dir=build.image_folder(args))
    if current:
        return None
    dataset = build.load_dataset(args)
    aug = build.augment_config(args)
    tasks = build.order_tasks(tasks_for(dataset), args.seed, aug,
                              lambda t, k, j: dataclasses.replace(t, copy=k, jitter=j))
    record.update(source=build.source_record(dataset), problems=dataset.problems, warnings=dataset.warnings)
    return build.run(args.out, tasks, build.Settings(level=1, size=args.size), record,
                     build.writers.formats_of(args.format), args.shard_size, args.workers, not args.quiet)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data_prep.level1", description=__doc__.split("\n\n")[0])
    build.add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    return build.cli_main("data_prep.level1", build_level1, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
