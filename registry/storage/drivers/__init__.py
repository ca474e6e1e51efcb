"""Storage drivers: a small path-keyed interface (`base.StorageDriver`) and its implementations.

A driver knows about paths and bytes only, never about manifests, tags or digests.
"""
