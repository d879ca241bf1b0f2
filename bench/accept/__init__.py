"""`python -m bench.accept`: one command that proves the GPU path (issue 35) and writes
summary.md and summary.json (docs/gpu-acceptance.md).

    command.py        the command line: flags, the order of the sections, the exit code
    budgets.py        how much each section does, at full size (a GPU, minutes) and --tiny (a CPU)
    machine.py        1. the machine, and the precision and memory format the harness chose on it
    data.py           small CIFAR-10 copies in the official pickle layout (real images or generated)
    probes.py         the hooks that watch a cell: masks after every epoch, placement, the fp32
                      evaluation passes, and the interruption that tests a resume
    method_checks.py  2. every registered method: one cell, checked, then interrupted and resumed
    speed.py          3. harness against a bare loop, device loader against torchvision, TFLOP/s
    packing.py        4. images/s of 1, 2, 4, 8 training processes sharing the device
    memory.py         5. peak host memory of a CIFAR cell beyond its training split
    reference.py      6. (--reference) the resnet20 row of the renda2020 grid, where it exists
    summary.py        printing the sections as they finish, and the two summary files
"""
