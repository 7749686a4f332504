"""The batches spoke's writes: make a batch from a file, run it, cancel it."""

from batches.services.create import BatchInvalid, batch_cancel, batch_create
from batches.services.runner import batch_run

__all__ = ["BatchInvalid", "batch_cancel", "batch_create", "batch_run"]
