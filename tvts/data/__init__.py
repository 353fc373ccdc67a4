"""Data: sources (YT-Temporal lists, manifests, shards), the one sample builder, transcripts, decoding, frame
sampling, transforms, the video processor, masking, the synthetic generator."""
