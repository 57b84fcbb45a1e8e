"""Gene clusters and their domains: corpora of domain sentences, Pfam tables, proteins and per-domain tables, and
the domain instances at every stratum joined by id."""
