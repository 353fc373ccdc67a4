"""Data: transcripts, decoding, frame sampling, transforms, masking, datasets, the synthetic generator."""
