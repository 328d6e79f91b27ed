"""Deployment export: fold BatchNorm + Scale into the convolutions, drop Dropout, write depthwise
layers as stock grouped Convolution (stock Caffe and OpenCV dnn load the result), then ONNX,
int8 ONNX (static, calibrated on real images) and ncnn (through pnnx, fp32); each is checked
against the original net in our Caffe on real images.

  python tools/export.py DEPLOY WEIGHTS --out DIR --dataset ROOT   # one net (ours or the released models)
  python tools/export.py --run runs/demo --dataset ROOT            # both levels: runs/demo/export/, the whole
                                                       # cascade checked, int8 error change, README

Images come from a dataset root of real faces in any layout data prep reads (`--dataset ROOT`,
required: MTFL, Sun et al.'s lists or CelebA; known label errors are fixed on the way,
data_prep/errata.py): its val split (the split a run with the same --seed kept apart) checks
agreement and accuracy, the first --calibration images of its train split calibrate int8.
The float formats must agree within 1e-4 of the normalised output; the command exits 1 when
one does not.
"""
import argparse
import sys
from pathlib import Path

from data_prep import readers
from data_prep.dataset import DataError
from landmarks.common.protoio import ModelError
from landmarks.conventions.images import ImageError, read_level1
from landmarks.deploy.export import export_net, format_record
from landmarks.runtime.backends import caffe_input_size

DEFAULT_CALIBRATION = 256  # more moves the int8 ranges little; each costs one decode
DEFAULT_VALIDATION = 1000  # MTFL's whole 10% validation split


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("deploy", nargs="?", help="deploy prototxt (with WEIGHTS and --out)")
    parser.add_argument("weights", nargs="?", help="its caffemodel")
    parser.add_argument("--out", help="output folder for one net")
    parser.add_argument("--run", help="a run folder: export both levels into RUN/export/")
    parser.add_argument("--dataset", "--images", "--celeba", dest="dataset", metavar="ROOT",
                        help="real faces, any layout (required): val checks, train calibrates")
    parser.add_argument("--dataset-format", type=readers.format_choice, default="auto",
                        help="the layout of ROOT (default: detected from the files present)")
    parser.add_argument("--seed", type=int, default=1, help="the seed of carved splits (default 1, as the workflow's)")
    parser.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION,
                        help=f"int8 calibration images (default {DEFAULT_CALIBRATION})")
    parser.add_argument("--validation", type=int, default=DEFAULT_VALIDATION,
                        help=f"validation images for the checks (default {DEFAULT_VALIDATION})")
    args = parser.parse_args(argv)
    if args.run and (args.deploy or args.out):
        parser.error("give either DEPLOY WEIGHTS --out DIR, or --run RUN")
    if not args.run and not (args.deploy and args.weights and args.out):
        parser.error("DEPLOY, WEIGHTS and --out are required (or --run RUN)")
    if not args.dataset:
        parser.exit(2, "export: error: name the real faces to check and calibrate on: --dataset ROOT "
                    "(e.g. your copy of MTFL; make export DATA=ROOT)\n")
    if args.calibration < 1 or args.validation < 1:
        parser.error("--calibration and --validation must be at least 1")
    return args


def _samples(args):
    """(validation, calibration) lists of (image path, (5, 2) true points)."""
    data = readers.load(args.dataset, args.dataset_format, seed=args.seed)
    pick = lambda name, count: [(data.image_path(e.name), e.points) for e in data.split(name)][:count]
    validation, calibration = pick("val", args.validation), pick("train", args.calibration)
    if not validation or not calibration:
        raise DataError(f"{args.dataset}: needs images in both the val and the train split")
    return validation, calibration


def main(argv=None):
    args = parse_args(argv)
    try:
        validation, calibration = _samples(args)
        if args.run:
            from landmarks.deploy.export_run import export_run
            from workflow.runs import run_models

            record = export_run(run_models(args.run), validation, calibration, Path(args.run) / "export", run=args.run)
            agrees = all(net["agrees"] for net in record["levels"].values())
            print(f"wrote {Path(args.run) / 'export'}")
        else:
            size = caffe_input_size(args.deploy)  # also refuses a file that is not a prototxt
            check = [read_level1(p, size)[0] for p, _ in validation]
            cal = [read_level1(p, size)[0] for p, _ in calibration]
            record = export_net(args.deploy, args.weights, args.out, check, cal)
            print(format_record(Path(args.deploy).name, record))
            agrees = record["agrees"]
            print(f"wrote {args.out}")
    except (DataError, ModelError, ImageError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if agrees else 1


if __name__ == "__main__":
    sys.exit(main())
