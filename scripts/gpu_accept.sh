#!/usr/bin/env bash
# The GPU acceptance run (issue 35, docs/gpu-acceptance.md) in one try on a machine lent with a GPU:
#
#     OUT=/some/folder bash scripts/gpu_accept.sh        # from anywhere; $OUT is what comes back
#
# Installs no package: torch and the harness's dependencies must be there already. The repository
# itself is imported from its folder, and installed (editable, without dependencies) only if
# `import bench` fails from there. DATA_ROOT, if set, is passed as --data-root (a folder holding
# cifar-10-batches-py/); otherwise the run generates files in that layout. Whatever happens, $OUT
# gets the log, the environment, nvidia-smi's view and the summaries (a partial one if the time
# limit stops the run: bench.accept writes what finished before it exits).
set -u
OUT=${OUT:-results/accept-device}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."

{
    echo "repository: $(pwd) at $(git rev-parse HEAD 2>/dev/null || echo 'no git')"
    python --version
    python - <<'EOF'
import importlib
for name in ("torch", "torchvision", "numpy", "yaml", "filelock", "tqdm", "pandas", "sklearn"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # a missing dependency is the first thing to read in a failed try
        print(f"{name} MISSING: {type(exc).__name__}: {exc}")
import torch
print("cuda available:", torch.cuda.is_available(), "| torch.version.cuda:", torch.version.cuda)
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(), "| bf16:", torch.cuda.is_bf16_supported())
EOF
} > "$OUT/environment.txt" 2>&1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

if ! python -c "import bench, methods" 2>/dev/null; then
    pip install --quiet --no-deps -e . >> "$OUT/environment.txt" 2>&1
fi

args=(--device cuda --out "$OUT/accept" --no-progress)
if [ -n "${DATA_ROOT:-}" ]; then
    args+=(--data-root "$DATA_ROOT")
fi
# 540 s: the run is sized for about 8 minutes on one modern GPU; on SIGTERM it writes the
# summary of the sections that finished and exits 143
PYTHONUNBUFFERED=1 timeout 540 python -m bench.accept "${args[@]}" 2>&1 | tee "$OUT/accept.log"
code=${PIPESTATUS[0]}
cp "$OUT/accept/summary.md" "$OUT/accept/summary.json" "$OUT/" 2>/dev/null || true
echo "bench.accept exit code: $code (0 pass, 1 a check failed, 2 bad input, 124/143 time limit)" \
    | tee -a "$OUT/accept.log"
exit "$code"
