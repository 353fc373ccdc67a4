"""Search your own videos by text or by example: ``tvts index``, ``tvts search``, ``tvts serve``.

- :mod:`tvts.search.index`: embed every video of a folder as overlapping windows (plus one whole-clip
  embedding and a thumbnail per window) into an index folder; resumable and incremental.
- :mod:`tvts.search.query`: load an index, rank its windows against a query embedding (exact matrix
  product, or FAISS) and merge nearby windows of one video into moments.
- :mod:`tvts.search.serve`: a local web page and JSON API over an index (standard library HTTP server).
"""
