"""The results store: records (one checksummed JSON per cell, `records`), the phase cache
(`cache`), and the safe file I/O both are written with (`files`).

The names the module bench.store had stay importable from here."""
from bench.store.files import (DamagedFile, StorageFull, atomic_torch_save, atomic_write,
                               atomic_write_bytes, safe_torch_load, sha256_file)
from bench.store.records import (SCHEMA_VERSION, CorruptRecord, LoadProblem, ResultStore,
                                 flatten_record, seal, validate_record)

__all__ = ["SCHEMA_VERSION", "CorruptRecord", "DamagedFile", "LoadProblem", "ResultStore",
           "StorageFull", "atomic_torch_save", "atomic_write", "atomic_write_bytes",
           "flatten_record", "safe_torch_load", "seal", "sha256_file", "validate_record"]
