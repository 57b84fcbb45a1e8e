"""DNA: the alphabet and one-hot encoding, labelled DNA sets and their files, benchmark suites and their loaders."""
