"""A TinyImageNet-shaped decoded cache (100,000 train / 10,000 test 3x64x64 uint8), written the way
bench/data/folders.py writes its decoded cache (prunebench-decoded.pt), plus the wnids.txt it
needs beside it."""
import sys
from pathlib import Path
import torch
root = Path(sys.argv[1]) / "tiny-imagenet-200"
root.mkdir(parents=True, exist_ok=True)
(root / "wnids.txt").write_text("\n".join(f"n{i:08d}" for i in range(200)) + "\n")
g = torch.Generator().manual_seed(0)
proto = torch.nn.functional.interpolate(torch.randint(0, 200, (200, 3, 8, 8), generator=g).float(), size=64).to(torch.uint8)
def split(n):
    y = torch.arange(n) % 200
    x = torch.empty((n, 3, 64, 64), dtype=torch.uint8)
    for lo in range(0, n, 2000):
        yy = y[lo:lo + 2000]
        x[lo:lo + 2000] = proto[yy] + torch.randint(0, 50, (len(yy), 3, 64, 64), generator=g, dtype=torch.uint8)
    return x, y
tx, ty = split(int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
vx, vy = split(len(tx) // 10)
torch.save({"train_x": tx, "train_y": ty, "test_x": vx, "test_y": vy}, root / "prunebench-decoded-v1.pt")
print("wrote", root)
