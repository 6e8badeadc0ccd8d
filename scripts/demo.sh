#!/usr/bin/env bash
# make demo: the whole S3 method on the embedded default (Fashion-MNIST 32x32, the wide initial space, CPU),
# as the five entry-point calls the README documents, chained. Each stage writes to a fixed
# directory under $DEMO and is skipped when finished, resumed when interrupted: re-running continues.
set -euo pipefail
PY=${PY:-.venv/bin/python}
DEMO=${DEMO:-logs/demo}
CONSTRAINTS=${CONSTRAINTS:-band_1m}     # params budget of the space and architecture search: 750k-1M
SAMPLES=${SAMPLES:-160}   # archs per space-search iteration (bench/move_rule.py: its power and null)
TOP_K=${TOP_K:-16}
# archs scored side by side in forked single-thread processes (search.workers): the same values, more
# archs per second than one process with every thread (bench/scoring_workers.py)
WORKERS=${WORKERS:-$(( $(nproc) >= 2 ? 2 : 1 ))}
DATA="data.max_train=12000 data.max_val=2000"
SPACE_CONF="hydra.searchpath=[file://$(realpath -m "$DEMO")/1_space/conf]"
export WANDB_SILENT=true

stage() { echo; echo "== $1"; }

# The pool of every space-search iteration: N archs, top tier K, every block dimension one value per stage
# (stage_uniform: each arch serves every dimension), so that the significant move rule detects a 2-point
# effect across a range and moves almost nothing on noise (README.md, "Space evolution that moves on signal").
POOL="search.samples=$SAMPLES search.top_k=$TOP_K search.subspace=stage_uniform search.workers=$WORKERS"

stage "1/6 space search: supernet training + E-T Error + significant shifts, per iteration ($DEMO/1_space)"
if [ ! -f "$DEMO/1_space/result.json" ]; then
  $PY search.py search=space space=wide $DATA constraints=$CONSTRAINTS $POOL \
    search.iterations=2 search.threshold=0.5 \
    search.train_epochs=2 search.finetune_epochs=1 hydra.run.dir="$DEMO/1_space"
fi

stage "2/6 supernet training on the searched space, and its E-T Error ($DEMO/2_supernet, $DEMO/2_score)"
if [ ! -f "$DEMO/2_supernet/finished.json" ]; then
  $PY train.py "$SPACE_CONF" space=searched $DATA trainer.max_epochs=3 hydra.run.dir="$DEMO/2_supernet"
fi
if [ ! -f "$DEMO/2_score/result.json" ]; then
  $PY search.py search=et_error "$SPACE_CONF" space=searched $DATA constraints=$CONSTRAINTS \
    search.samples=50 search.top_k=5 search.subspace=stage_uniform search.workers=$WORKERS \
    supernet="$DEMO/2_supernet/checkpoints/last.ckpt" hydra.run.dir="$DEMO/2_score"
fi

stage "3/6 evolutionary search under constraints=$CONSTRAINTS ($DEMO/3_evolution)"
if [ ! -f "$DEMO/3_evolution/result.json" ]; then
  $PY search.py search=evolution "$SPACE_CONF" space=searched $DATA supernet="$DEMO/2_supernet/checkpoints/last.ckpt" \
    constraints=$CONSTRAINTS search.population=16 search.generations=8 search.parents=5 \
    search.mutations=6 search.crossovers=6 search.workers=$WORKERS hydra.run.dir="$DEMO/3_evolution"
fi

stage "4/6 retraining the best architecture from scratch ($DEMO/4_retrain)"
if [ ! -f "$DEMO/4_retrain/finished.json" ]; then
  $PY train.py experiment=retrain_tiny arch="$DEMO/3_evolution/top/top1.yaml" data.max_train=20000 \
    trainer.max_epochs=2 hydra.run.dir="$DEMO/4_retrain"
fi

stage "5/6 evaluation on the Fashion-MNIST test set ($DEMO/5_evaluate)"
if [ ! -f "$DEMO/5_evaluate/evaluation.json" ]; then
  $PY evaluate.py arch="$DEMO/3_evolution/top/top1.yaml" ckpt_path="$DEMO/4_retrain/checkpoints/last.ckpt" \
    hydra.run.dir="$DEMO/5_evaluate"
fi

stage "6/6 export of the found model: config.json, model.safetensors, a model card ($DEMO/6_export)"
if [ ! -f "$DEMO/6_export/config.json" ]; then
  $PY export.py arch="$DEMO/3_evolution/top/top1.yaml" ckpt_path="$DEMO/4_retrain/checkpoints/last.ckpt" \
    hydra.run.dir="$DEMO/6_export"
fi

$PY scripts/demo_summary.py "$DEMO"
