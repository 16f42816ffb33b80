"""Stands in for your own training: train ``net.py``'s model on an image folder and save its weights as a plain
``state_dict`` (what ``torch.save(model.state_dict(), ...)`` gives; fewprune reads it with ``weights_only=True``).

    python examples/your-model/train.py /tmp/garments /tmp/garments/weights.pt --epochs 3
"""

import argparse
import sys
from pathlib import Path

import torch

import fewprune as fp

sys.path.insert(0, str(Path(__file__).parent))
from net import build  # noqa: E402

# How this model reads its images: grey, 28×28, Fashion-MNIST's mean and std. Pruning must read them the same way.
CONVENTION = {"image_size": 28, "channels": 1, "mean": 0.2860, "std": 0.3530, "resize": "fit"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    train = fp.data.load(f"imagefolder:{args.folder}", "train", **CONVENTION)
    test = fp.data.load(f"imagefolder:{args.folder}", "test", **CONVENTION)
    loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True)
    model = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=args.epochs * len(loader))
    for epoch in range(args.epochs):
        model.train()
        for images, labels in loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            right = sum(int((model(x).argmax(1) == y).sum()) for x, y in torch.utils.data.DataLoader(test, 256))
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {100 * right / len(test):.2f}%")
    torch.save(model.state_dict(), args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
