"""kdet.datasets."""
