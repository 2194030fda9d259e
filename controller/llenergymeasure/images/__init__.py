"""Backend runner images: their names, labels and contract check (catalog) and how they are built (build)."""
