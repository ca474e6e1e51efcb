"""Berth client library: OCI primitives, registry sessions, push/pull/pack, and the `berth` CLI."""
