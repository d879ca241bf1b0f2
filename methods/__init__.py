"""Built-in pruning methods. Each module registers its methods when imported."""
from methods import basic  # noqa: F401
