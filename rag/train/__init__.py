"""Training-time code: the public data the reader learns from and its training loop.

Nothing here runs on the question-answering path; ``rag.reader`` loads what it produced.
"""
