"""Object storage: one interface over local folders and gs:// buckets.

    store = open_store("gs://bucket/prefix")   # or a folder, or None for $LACLIP_ROOT
    store.write_bytes("rewrites/cc12m/r1/00000.parquet", data, create_only=True)

Paths are always relative to the store root and use "/".
"""

from laclip.storage.base import Store, default_root, open_store, resolve_root

__all__ = ["Store", "default_root", "open_store", "resolve_root"]
