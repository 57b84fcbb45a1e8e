"""Annotation: genes of genomes and gene clusters (GenBank, FASTA, pyrodigal) and their Pfam domains (pyhmmer)."""
