"""The local development stack's own pieces: the sample docs site and the tiny server that serves it."""
