"""The S3 storage driver: driver.py (the StorageDriver), appendable.py (upload sessions as
multipart uploads any replica can continue), bucket.py (the boto3 client and its pool)."""

from .appendable import part_size
from .driver import S3Driver

__all__ = ["S3Driver", "part_size"]
