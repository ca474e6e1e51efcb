"""Berth registry: an OCI Distribution v1.1 server (aiohttp) over pluggable storage."""
