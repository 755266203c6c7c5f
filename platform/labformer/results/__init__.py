"""Run records (result.json) and their aggregation into tables (`python -m labformer results`)."""
