"""Datasets as uint8 image tensors and labels (`datasets`), image folders and their decoded
caches (`folders`, `decoded`), and the device-resident loader that batches them (`loader`).

The dataset API a plugin uses is importable from here, as it was from the module bench.data:
    from bench.data import DatasetSpec, Split, register_dataset, load_dataset, DataBundle
"""
from bench.data.datasets import (DataBundle, DataError, DatasetSpec, Split,
                                 carve_validation, channel_stats, dataset_fingerprint,
                                 dataset_sha256, load_dataset, register_dataset, train_subset)

__all__ = ["DataBundle", "DataError", "DatasetSpec", "Split", "carve_validation",
           "channel_stats", "dataset_fingerprint", "dataset_sha256", "load_dataset",
           "register_dataset", "train_subset"]
