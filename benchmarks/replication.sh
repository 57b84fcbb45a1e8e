#!/bin/sh
# The replication sweeps of docs/replication.md: hyperbolic against Euclidean CNNs under the paper's
# schedule (configs/hge_paper.yaml) and the short one (configs/gue_short_warmup.yaml), seeds 1 2 3,
# every run writing its learning curves, then the selection-rule report.
#
#   sh benchmarks/replication.sh A &   # lane A: prom_core_tata, both schedules; tf/2, short schedule
#   sh benchmarks/replication.sh B &   # lane B: TEB dna_cmc, prom_300_tata, tf/4, short schedule
#   sh benchmarks/replication.sh C     # lane C: the paper's schedule on the rest (did not fit one session)
#   sh benchmarks/replication.sh report
#
# Two lanes at a time on a 2-core machine, one thread per run. Every run writes its record when it
# finishes: run a lane again and it skips what is done, so a killed lane, or one in a later session
# (the records, configs and curves are committed; weights and logs are not), resumes where it stopped.
# DATA defaults to ../shared/data (GUE tasks under gue/, TEB files under teb/); OUT to docs/replication.
set -e
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/replication}
BIOSTRATA=${BIOSTRATA:-biostrata}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
run() { $BIOSTRATA benchmark --data-dir "$DATA" --threads 1 --no-progress "$@"; }
short="--config configs/gue_short_warmup.yaml --out $OUT/gue_short_warmup"
paper="--config configs/hge_paper.yaml --out $OUT/hge_paper"
case "$1" in
A)
  run --suite gue --tasks prom_core_tata --models cnn hcnn-s hcnn-m --seeds 1 2 3 $short
  run --suite gue --tasks prom_core_tata --models cnn hcnn-s --seeds 1 2 3 $paper
  run --suite gue --tasks tf/2 --models cnn hcnn-s --seeds 1 2 3 $short
  run --suite gue --tasks prom_core_tata --models hcnn-m --seeds 1 2 $paper
  ;;
B)
  run --suite teb --tasks dna_cmc --models cnn hcnn-s hcnn-m --seeds 1 2 3 $short
  run --suite gue --tasks prom_300_tata --models cnn hcnn-s hcnn-m --seeds 1 2 3 $short
  run --suite gue --tasks tf/4 --models cnn hcnn-s --seeds 1 2 3 $short
  run --suite gue --tasks prom_core_tata --models hcnn-m --seeds 3 $paper
  ;;
C)
  run --suite gue --tasks prom_300_tata --models cnn hcnn-s hcnn-m --seeds 1 2 3 $paper
  run --suite teb --tasks dna_cmc --models cnn hcnn-s hcnn-m --seeds 1 2 3 $paper
  run --suite gue --tasks tf/2 tf/4 --models cnn hcnn-s --seeds 1 2 3 $paper
  ;;
report)
  $BIOSTRATA report --selection "$OUT/hge_paper" "$OUT/gue_short_warmup" --out "$OUT"
  ;;
*)
  echo "usage: sh benchmarks/replication.sh A|B|C|report" >&2
  exit 2
  ;;
esac
