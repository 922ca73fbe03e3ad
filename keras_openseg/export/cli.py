"""`keras-openseg export`: a preset as SavedModel / ONNX / LiteRT / torch program, or in Google's release signature.

Keras and the backend are imported only when the command runs.
"""

import argparse
import json
import os

from keras_openseg.export.formats import FILE_NAMES
from keras_openseg.export.formats import FORMATS
from keras_openseg.export.formats import GOOGLE_RELEASE_FORMAT
from keras_openseg.export.formats import IMAGE_DTYPES


def add_arguments(parser):
    parser.add_argument("--preset", required=True, help="OpenSegModel preset: local dir, kaggle://, hf://")
    parser.add_argument(
        "--format",
        default="saved_model",
        choices=FORMATS + (GOOGLE_RELEASE_FORMAT,),
        help=f"artifact format; {GOOGLE_RELEASE_FORMAT!r}: the signature of Google's OpenSeg release "
        "(keras_openseg.google_release)",
    )
    parser.add_argument(
        "--output", required=True, help="output folder (the SavedModel itself, or the folder of the model file)"
    )
    parser.add_argument(
        "--image-size",
        type=_parse_image_size,
        default=None,
        help="fixed input size S or HxW (default: any size where the format allows it; google-savedmodel: the "
        "box images are resized into, default the converter's image_size, else 640)",
    )
    parser.add_argument("--image-dtype", default="float32", choices=IMAGE_DTYPES, help="dtype of the images input")


def _parse_image_size(text):
    try:
        sides = [int(side) for side in text.lower().split("x")]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"--image-size must be S or HxW with positive ints. Received: {text!r}")
    return sides[0] if len(sides) == 1 else tuple(sides)


def run(args):
    import keras

    from keras_openseg.export.openseg_inference import check_format
    from keras_openseg.export.openseg_inference import export_info
    from keras_openseg.export.openseg_inference import export_model
    from keras_openseg.models import OpenSegModel

    if args.format == GOOGLE_RELEASE_FORMAT:
        from keras_openseg.google_release import export_google_saved_model

        export_google_saved_model(OpenSegModel.from_preset(args.preset), args.output, image_size=args.image_size)
        print(
            f"keras-openseg export: wrote {args.output} (Google's OpenSeg release signature, "
            f"{keras.backend.backend()} backend)"
        )
        return 0
    # Bad input raises ValueError / OSError: `keras_openseg.cli` prints it as one line and exits 2.
    check_format(args.format)
    model = OpenSegModel.from_preset(args.preset)
    os.makedirs(args.output, exist_ok=True)
    target = args.output if args.format == "saved_model" else os.path.join(args.output, FILE_NAMES[args.format])
    image_size = args.image_size
    if image_size is None:
        image_size = getattr(getattr(model.preprocessor, "image_converter", None), "image_size", None)
    export_model(model, target, format=args.format, image_size=image_size, image_dtype=args.image_dtype)
    info = export_info(model, args.format, image_size, args.image_dtype)
    with open(os.path.join(args.output, "export_info.json"), "w") as file:
        json.dump(info, file, indent=2)
    print(f"keras-openseg export: wrote {target} ({args.format}, {keras.backend.backend()} backend)")
    return 0
