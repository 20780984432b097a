"""Where a job's inputs come from (local paths, later URLs and datasets) and the blob store."""
