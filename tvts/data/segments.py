"""The segment spec of TVTS Eq. 1, stated once: K transcript segments of l seconds with a gap between them.
Every entry point (recipes, datasets, `data check`, `eval sort`) takes its defaults from here, and the
config checks K against the limits here. Imports nothing, so command-line parsers stay fast."""

NUM_SEGMENTS = 4  # K (the papers' setting)
SEGMENT_SECONDS = 4.0  # l: the published spans give 3, 4 or 5 s per segment
GAP = 1.0  # seconds between two segments
MIN_SEGMENTS = 2
MAX_SEGMENTS = 7  # order decoding and the sort metrics enumerate all K! orders (5040)
