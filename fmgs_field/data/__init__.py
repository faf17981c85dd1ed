"""Datamanager that attaches cached teacher feature maps to full-image batches."""
