"""Where a job's inputs come from (local paths, datasets, URLs) and the blob store."""
