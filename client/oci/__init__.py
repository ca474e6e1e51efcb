"""OCI primitives shared by the registry and the client: digests, media types,
descriptors, names and references, and manifest parsing. This package is their one home."""
