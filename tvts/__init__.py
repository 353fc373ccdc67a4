"""tvts: spatiotemporal video representations learned from narration (TVTS, TVTSv2, CPD, S-ViLM)."""

__version__ = "0.1.0"
