"""Dataset: alignment, quality checks, splits, dataset manifests and exports to other layouts."""
