"""A TinyImageNet-200 folder in the official release's layout, with generated JPEGs instead of the
real photographs: wnids.txt (the official 200 ids), words.txt, train/<wnid>/images/<wnid>_<i>.JPEG
with train/<wnid>/<wnid>_boxes.txt, val/images/val_<i>.JPEG with val/val_annotations.txt, and
test/images/test_<i>.JPEG. The loader reads it exactly as it reads the real folder (listing,
fingerprint, JPEG decoding, the decoded cache), so the memory of a real cell can be measured on a
machine without the real data.

    python tests/benchmarks/make_tiny_folder.py DIR [TRAIN_PER_CLASS (500)]

writes DIR/tiny-imagenet-200 (about 2 KB an image: 240 MB for the full 120,000)."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.folders import TINY_WNIDS

root = Path(sys.argv[1]) / "tiny-imagenet-200"
per_class = int(sys.argv[2]) if len(sys.argv) > 2 else 500
rng = np.random.default_rng(0)
# One smooth colour pattern per class plus per-image noise: JPEG sizes near the real images'.
protos = [np.asarray(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
                     .resize((64, 64), Image.Resampling.BILINEAR), dtype=np.int16)
          for _ in TINY_WNIDS]


def image(label: int) -> Image.Image:
    noise = rng.integers(-40, 41, (64, 64, 3), dtype=np.int16)
    return Image.fromarray(np.clip(protos[label] + noise, 0, 255).astype(np.uint8))


root.mkdir(parents=True, exist_ok=True)
(root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
(root / "words.txt").write_text("".join(f"{w}\tclass {w}\n" for w in TINY_WNIDS))
for label, wnid in enumerate(TINY_WNIDS):
    images = root / "train" / wnid / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        image(label).save(images / f"{wnid}_{i}.JPEG", quality=75)
    (root / "train" / wnid / f"{wnid}_boxes.txt").write_text(
        "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(per_class)))
for split, n in (("val", 50 * len(TINY_WNIDS)), ("test", 50 * len(TINY_WNIDS))):
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        label = i % len(TINY_WNIDS)
        image(label).save(root / split / "images" / f"{split}_{i}.JPEG", quality=75)
        lines.append(f"{split}_{i}.JPEG\t{TINY_WNIDS[label]}\t0\t0\t63\t63\n")
    if split == "val":
        (root / "val" / "val_annotations.txt").write_text("".join(lines))
print("wrote", root)
