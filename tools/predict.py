"""Predict the five landmarks of every face in every image given (files, or folders searched
recursively for .jpg/.jpeg/.png): MTCNN (models/mtcnn/, in our Caffe) finds the faces, the
cascade landmarks each from the region around its box. Writes a CSV; with --draw, the drawn
images too.

  python tools/predict.py photos/ more.jpg --out points.csv             # the shipped models
  python tools/predict.py photos/ --out points.csv --draw drawn/ --run runs/main
  python tools/predict.py crops/ --whole-image --l1 DEPLOY WEIGHTS [--l2 DEPLOY WEIGHTS]

CSV: a header line `image,face,score,left,top,right,bottom,x1,y1,...,x5,y5`, then one row per
face: the detector's score and box (half-open pixels), points in original-image pixels (level
2's when there is a level-2 net), in CelebA's order: left eye, right eye, nose, left and right
mouth corner. --whole-image takes each image as one face filling it (face crops: the article's
setting), with an empty score and the whole image as its box. A photo without a face is named
on screen and has no row. Images that cannot be read are named on screen and left out; the exit
status is then 1.
"""
import argparse
import sys

from landmarks.runtime import predict
from landmarks.runtime.backends import CaffeNet
from landmarks.runtime.inference import Cascade
from landmarks.runtime.mtcnn import CELL, MIN_FACE, MTCNN
from workflow import runs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and folders")
    parser.add_argument("--out", default="predictions.csv", help="the CSV to write (default %(default)s)")
    parser.add_argument("--draw", metavar="DIR", help="also write each image with its points drawn here")
    parser.add_argument("--whole-image", action="store_true",
                        help="each image is one face that fills it (crops); no face detection")
    parser.add_argument("--min-face", type=int, default=MIN_FACE,
                        help=f"the smallest face to find, pixels (default {MIN_FACE})")
    parser.add_argument("--max-faces", type=int, default=0, help="at most this many faces an image, the most "
                        "confident (default 0: all)")
    runs.add_model_arguments(parser)
    parser.add_argument("--output-blob", help="the nets' output blob (default fc2, else the last output)")
    parser.add_argument("--batch", type=int, default=predict.DEFAULT_BATCH,
                        help="images per forward (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    runs.check_model_arguments(parser, args)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.min_face < CELL:
        parser.error(f"--min-face must be at least {CELL} (MTCNN's smallest window)")
    if args.max_faces < 0:
        parser.error("--max-faces must be 0 (all) or more")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        images = predict.find_images(args.inputs)
    except predict.InputError as exc:
        print(f"predict: error: {exc}", file=sys.stderr)
        return 2
    level1, level2 = runs.chosen_models(args)
    try:
        cascade = Cascade(CaffeNet(*level1, output=args.output_blob),
                          CaffeNet(*level2, output=args.output_blob) if level2 else None,
                          runs.chosen_recipe(args))
        detector = None if args.whole_image else MTCNN(min_face=args.min_face, points="onet")
    except FileNotFoundError as exc:
        print(f"predict: error: {exc}", file=sys.stderr)
        return 2
    results, skipped = predict.predict(cascade, images, args.batch, not args.quiet, detector, args.max_faces)
    for found, reason in skipped:
        print(f"skipped {found.name}: {reason}", file=sys.stderr)
    for found, faces in results:
        if not faces:
            print(f"{found.name}: no face found")
    predict.write_csv(args.out, results)
    faces = sum(len(f) for _, f in results)
    print(f"wrote {args.out}: {faces} face(s) in {len(results)} image(s), {'level 2' if level2 else 'level 1'} points"
          + (f"; {len(skipped)} skipped" if skipped else ""))
    if args.draw:
        predict.draw(results, args.draw)
        print(f"drew {len(results)} image(s) in {args.draw}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
