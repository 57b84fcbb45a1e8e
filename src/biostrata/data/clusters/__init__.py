"""Gene clusters and their domains: corpora of domain sentences (:mod:`.corpus`), Pfam tables (:mod:`.pfam`),
proteins and per-domain tables (:mod:`.proteins`), and the domain instances at every stratum joined by id
(:mod:`.domains`).

The names of the module that was ``biostrata.data.clusters`` are in :mod:`.corpus` (#25), ``PfamFamily`` and
``PfamTable`` in :mod:`.pfam`; used from here they warn for one release."""

from biostrata.compat import moved

_CORPUS = ("SEP", "Cluster", "Issue", "ClusterCorpus", "DomainVocabulary", "read_domain_list",
           "read_pfamid_csv", "read_bigcarp_csv", "read_clusters", "read_classes", "class_matrix")  # fmt: skip
__getattr__ = moved(__name__, dict.fromkeys(_CORPUS, "biostrata.data.clusters.corpus")
                    | dict.fromkeys(("PfamFamily", "PfamTable"), "biostrata.data.clusters.pfam"))  # fmt: skip
