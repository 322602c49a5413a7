"""The model directory format: manifest, checksums, and where models are found."""
