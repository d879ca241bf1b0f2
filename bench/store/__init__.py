"""The results store: records (one checksummed JSON per cell), the phase cache (`cache`), and the
atomic file helpers both are written with.

The names the module bench.store had stay importable from here."""
from bench.store.records import (SCHEMA_VERSION, CorruptRecord, DamagedFile,
                                 LoadProblem, ResultStore, StorageFull, atomic_torch_save,
                                 atomic_write, atomic_write_bytes, flatten_record,
                                 safe_torch_load, seal, sha256_file, validate_record)

__all__ = ["SCHEMA_VERSION", "CorruptRecord", "DamagedFile", "LoadProblem", "ResultStore",
           "StorageFull", "atomic_torch_save", "atomic_write", "atomic_write_bytes",
           "flatten_record", "safe_torch_load", "seal", "sha256_file", "validate_record"]
