"""Peak host memory of a TinyImageNet-shaped cell's data path: load (from the decoded cache), carve,
statistics, then a training epoch's worth of batches through a smallcnn. Run with PYTHONPATH set to
the code to measure; prints the peak RSS (VmHWM) and the uint8 training split's size."""
import sys, time, torch
from bench.data import load_dataset
from bench.data.loader import DeviceLoader
from bench.plugins import load_builtins
from bench.train.models import build_model
load_builtins()  # the registries hold entries; a script loads the built-ins once
root, batches = sys.argv[1], int(sys.argv[2])
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t0 = time.time()
b = load_dataset("tinyimagenet", root)
t_load = time.time() - t0
model = build_model("smallcnn", 200, 3, 64)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
loader = DeviceLoader(b.train, b, 128, train=True, seed=0)
for i, bt in enumerate(loader):
    loss = torch.nn.functional.cross_entropy(model(bt.x), bt.y)
    opt.zero_grad(); loss.backward(); opt.step()
    if i + 1 >= batches:
        break
split_mb = b.train.images.numel() / 2**20
print(f"peak_rss_mb={hwm():.0f} train_uint8_mb={split_mb:.0f} ratio={hwm() / split_mb:.2f} "
      f"load_s={t_load:.0f} mean={b.mean}")
