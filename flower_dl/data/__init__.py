"""Data: datasets and partitioners, node folders, and splitting a dataset into them."""
