"""A record says which CPU ran it: fp32 kernels differ between vector instruction sets only by
rounding, and a study spread over several hosts must be able to tell which cells ran where."""
from __future__ import annotations

from pathlib import Path

import torch

from bench.exec.provenance import provenance


def _cpuinfo_model() -> str | None:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def test_a_cpu_record_names_the_cpu_model_and_the_instructions_torch_used():
    prov = provenance(torch.device("cpu"))
    assert prov["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    model = _cpuinfo_model()
    if model:  # Linux: the model, not the architecture platform.processor() gives
        assert prov["device_name"] == prov["cpu"] == model
    assert prov["cpu"] and prov["device_name"]
