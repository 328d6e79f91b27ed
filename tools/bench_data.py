"""Benchmark level-1 data preparation: naive (full decode + resize, one process) against ours
(reduced JPEG decode + every core), side by side in one run, on CelebA-sized synthetic JPEGs.

    python tools/bench_data.py [--json FILE] [--count N]

Prints images per second for both and their ratio (target: >= 6 on 2 cores), and checks that
the labels are identical. The synthetic JPEGs are calibrated to cost what real CelebA JPEGs
cost to decode (SPEC.md: 4.4 ms full, 1.0 ms at 1/8); each run measures and prints its images'
costs beside those figures. `--dataset ROOT` times a real dataset root's own files instead.
A benchmark, not a test: timings depend on the machine's load.
"""
import argparse
import sys
import tempfile
from pathlib import Path

from data_prep import benchmark
from landmarks.common import checks
from landmarks.common.atomic import write_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--count", type=int, default=benchmark.DEFAULT_COUNT,
                        help="images to generate and time (default: %(default)s)")
    parser.add_argument("--size", type=int, default=48, help="output side in pixels (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes for ours (default: every available core)")
    parser.add_argument("--seed", type=int, default=0, help="image generator seed (default: %(default)s)")
    parser.add_argument("--passes", type=int, default=benchmark.DEFAULT_PASSES,
                        help="each timed run goes over the images this many times (default: %(default)s)")
    parser.add_argument("--median-width", type=int, default=benchmark.MEDIAN_WIDTH,
                        help="median image width in px; calibrated to CelebA's decode cost (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=benchmark.DEFAULT_REPEAT,
                        help="time each path this many times and keep the best (default: %(default)s)")
    parser.add_argument("--dataset", "--celeba", dest="dataset", metavar="ROOT",
                        help="time the first --count images of a real dataset root (CelebA, MTFL or Sun et al.'s "
                             "lists) instead of synthetic ones; --celeba is an alias")
    parser.add_argument("--keep", metavar="DIR", help="write the images here and keep them (default: a temporary folder)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if min(args.count, args.repeat, args.passes, args.median_width) < 1 or args.size < 8 or \
            (args.workers is not None and args.workers < 1):
        print("bench_data: --count, --passes, --repeat, --median-width and --workers must be at least 1, "
              f"--size at least 8 (got --size {args.size}, --median-width {args.median_width}, "
              f"--workers {args.workers})", file=sys.stderr)
        return 2
    for target in filter(None, (args.json and Path(args.json).absolute().parent, args.keep)):
        problem = checks.writable_problem(target)  # before minutes of work, not after
        if problem:
            print(f"bench_data: {problem}", file=sys.stderr)
            return 2
    if args.dataset:
        try:
            items = benchmark.dataset_items(args.dataset, args.count)
        except Exception as exc:  # DataError, ValueError: the message names the root
            print(f"bench_data: {exc}", file=sys.stderr)
            return 2
        result = benchmark.run(None, args.count, args.size, args.workers, args.seed, args.repeat, args.passes,
                               items=items)
    elif args.keep:
        result = benchmark.run(args.keep, args.count, args.size, args.workers, args.seed, args.repeat, args.passes,
                                   args.median_width)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_data-") as folder:
            result = benchmark.run(folder, args.count, args.size, args.workers, args.seed, args.repeat, args.passes,
                                   args.median_width)
    print(benchmark.report(result))
    if args.json:
        write_json(args.json, result, indent=1)
    return 0 if result["labels_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
