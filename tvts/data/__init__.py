"""Data: transcripts, decoding, frame sampling, transforms, the video processor, masking, datasets, the
synthetic generator."""
