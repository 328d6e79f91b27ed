"""Generate the MobileNet-V2 nets and solvers.

  python tools/make_prototxt.py --canonical            # rewrite prototxt/ and solvers/
  python tools/make_prototxt.py --level 1 --out DIR    # one level's files for your own run
"""
import argparse
import sys

from landmarks.nets import mobilenet as nets
from landmarks.nets import solvers
from landmarks.nets.generate import write_canonical, write_level_files


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--canonical", action="store_true",
                        help="write the committed files in prototxt/ and solvers/ (article settings)")
    parser.add_argument("--level", type=int, choices=(1, 2), default=1, help="which level (default 1)")
    parser.add_argument("--out", help="folder for train_test.prototxt, deploy.prototxt, solver.prototxt")
    parser.add_argument("--data", help="data folder written by data_prep (default data/level<N>)")
    parser.add_argument("--source", choices=nets.SOURCE_CHOICES, default="hdf5", help="data format (default hdf5)")
    parser.add_argument("--depthwise", choices=nets.DEPTHWISE_CHOICES, default="layer",
                        help="layer: our ConvolutionDepthwise; group: stock Convolution with group (default layer)")
    parser.add_argument("--input-size", type=int, default=48, help="input side in pixels (default 48; 24 also works)")
    parser.add_argument("--points", type=int, default=5, help="landmarks per face (default 5)")
    parser.add_argument("--schedule", choices=sorted(solvers.SCHEDULES), default="article",
                        help="training schedule, which also sets the batch sizes (default article)")
    parser.add_argument("--batch-train", type=int, help="override the schedule's training batch")
    parser.add_argument("--batch-test", type=int, help="override the schedule's test batch")
    parser.add_argument("--mode", choices=("CPU", "GPU"), help="solver_mode (default: GPU when available)")
    args = parser.parse_args(argv)
    if not args.canonical and not args.out:
        parser.error("give --canonical or --out DIR")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.canonical:
        for path in write_canonical():
            print(path)
        return 0
    schedule = solvers.get_schedule(args.schedule)
    overrides = {k: v for k, v in (("batch_train", args.batch_train), ("batch_test", args.batch_test)) if v}
    if overrides:
        from dataclasses import replace
        schedule = replace(schedule, **overrides)
    cfg = nets.NetConfig(input_size=args.input_size, points=args.points, depthwise=args.depthwise)
    paths = write_level_files(args.out, args.level, cfg, args.source, args.data or f"data/level{args.level}",
                              schedule, mode=args.mode)
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
