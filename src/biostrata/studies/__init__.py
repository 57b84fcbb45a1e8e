"""End-to-end studies: each one command that reproduces a set of results."""
