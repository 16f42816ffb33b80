"""Write some of Debian's Fashion-MNIST as an image folder, the layout your own images would have:
``OUT/train/<class>/<n>.png`` and ``OUT/test/<class>/<n>.png``.

    python examples/your-model/make_folder.py /tmp/garments --train 1000 --test 200   # images per class
"""

import argparse
from pathlib import Path

from PIL import Image

import fewprune as fp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=1000, help="training images per class")
    parser.add_argument("--test", type=int, default=200, help="test images per class")
    args = parser.parse_args()
    for split, per_class in (("train", args.train), ("test", args.test)):
        data = fp.data.load("fashion-mnist", split)
        written = {}
        for index in range(len(data)):
            label = int(data.targets[index])
            if written.get(label, 0) >= per_class:
                continue
            name = data.info.classes[label].replace("/", "_").replace(" ", "_").lower()  # 'T-shirt/top' → 't-shirt_top'
            folder = args.out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(data.images[index, 0].numpy(), mode="L").save(folder / f"{index}.png")  # the raw bytes
            written[label] = written.get(label, 0) + 1
        print(f"{split}: {sum(written.values())} images in {len(written)} class folders under {args.out / split}")


if __name__ == "__main__":
    main()
