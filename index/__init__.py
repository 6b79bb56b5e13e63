"""Item retrieval: a FAISS index over item embeddings (exact / IVF / HNSW inner product), save/load."""

from index.item_index import GPU_MAX_K, ItemIndex, default_nlist, default_nprobe, gpus_available
from index.storage import IndexIntegrityError

__all__ = ["GPU_MAX_K", "IndexIntegrityError", "ItemIndex", "default_nlist", "default_nprobe", "gpus_available"]
