"""Run inside a MediaPipe environment (not edgeclf's): classify images with MediaPipe Tasks' ImageClassifier.

    python mediapipe_classify.py MODEL IMAGE...   -> one JSON line: {"top1": {image: [index, label, score]}}
                                                     or {"error": "<first line of MediaPipe's refusal>"}
"""
import json
import sys

import mediapipe as mp
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions


def main(model: str, images: list[str]) -> dict:
    """MediaPipe's top-1 for each image, or why it refused the model."""
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=1)
    try:
        classifier = vision.ImageClassifier.create_from_options(options)
    except Exception as exc:  # MediaPipe raises ValueError/RuntimeError/NotImplementedError on a model it refuses
        return {"error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"}
    with classifier:
        top1 = {}
        for image in images:
            best = classifier.classify(mp.Image.create_from_file(image)).classifications[0].categories[0]
            top1[image] = [best.index, best.category_name, best.score]
    return {"top1": top1, "mediapipe": mp.__version__}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
