"""Test helpers that ship with the package (``tiny``: tiny random CLIP/DINO teachers and a small field config)."""
