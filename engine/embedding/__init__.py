"""Learned global re-ID embeddings: the network (model.py), what it sees (views.py), and how a
trained one is stored in the gallery database and served to the pipeline (stored.py)."""
