"""Label schemes, emotion vocabularies and annotation aggregation."""
