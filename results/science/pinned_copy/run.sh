#!/bin/bash
# The commands behind results/science/pinned_copy, run from a worktree at b3883a0 (the code of
# results/cpu-2026-12-07; eval_kl3 ran at 95959ce, whose evaluation code is the same) whose runs/cpu
# holds that run's data, 4L/128 bases and (for eval_baseB) SFT runs at LR 1e-3; one thread a job,
# two jobs at a time, on the 2-core AMX Xeon. Base A is runs/cpu/cpu-4l128/base_ann (that run's
# annotated base, init seed 1337); base B is the same recipe at init seed 1338.
set -e
export OMP_NUM_THREADS=1
CURVE=/work/main/results/science/pinned_copy/pinned_curve.py   # this folder's script, from the worktree
A=runs/cpu/cpu-4l128/base_ann; P=runs/cpu/cpu-4l128/base_plain; B=runs/seed/base_ann_s1338
SFT="--n_sft_examples 10000 --data_dir runs/cpu/data"

# base B (30 min on one thread)
python pretrain.py --preset cpu-4l128 --data_dir runs/cpu/data --out_dir $B --annotations --seed 1338

# the curves: the pinned values' loss every 50 (100) steps
python $CURVE runs/curve/ann_s1337_sft0b.jsonl 50 -- --init_from $A --format anchored --out_dir runs/curve/ann_s1337_sft0b $SFT --lr 1e-3 --seed 0
python $CURVE runs/curve/ann_s1338_sft0.jsonl 50 -- --init_from $B --format anchored --out_dir runs/curve/ann_s1338_sft0 $SFT --lr 1e-3 --seed 0
python $CURVE runs/curve/ann_s1337_ep3.jsonl 100 -- --init_from $A --format anchored --out_dir runs/curve/ann_s1337_ep3 $SFT --lr 1e-3 --epochs 3 --seed 0
python $CURVE runs/curve/ann_s1337_lr3e-3.jsonl 50 -- --init_from $A --format anchored --out_dir runs/curve/ann_s1337_lr3e-3 $SFT --lr 3e-3 --seed 0
for s in 0 1; do
  python $CURVE runs/r2/anchored_s$s.curve.jsonl 100 -- --init_from $A --format anchored --out_dir runs/r2/anchored_s$s --n_sft_examples 20000 --data_dir runs/cpu/data --lr 1e-3 --seed $s
done

# the candidates over seeds: LR 3e-3 (one epoch of 10,000) and one epoch of all 20,000 at 1e-3
for s in 0 1 2; do
  python sft.py --init_from $A --format anchored --out_dir runs/lr3/anchored_s$s $SFT --lr 3e-3 --seed $s
  python sft.py --init_from $P --format standard --out_dir runs/lr3/standard_s$s $SFT --lr 3e-3 --seed $s
  python sft.py --init_from $P --format standard --out_dir runs/r2/standard_s$s --n_sft_examples 20000 --lr 1e-3 --seed $s
done
python sft.py --init_from $A --format anchored --out_dir runs/r2/anchored_s2 --n_sft_examples 20000 --lr 1e-3 --seed 2
python sft.py --init_from $A --format anchored --out_dir runs/lr3/anchored_kl $SFT --lr 3e-3 --anchor_kl 1 --seed 0
for s in 1 2; do
  python sft.py --init_from $A --format anchored --out_dir runs/lr3/anchored_kl_s$s $SFT --lr 3e-3 --anchor_kl 1 --seed $s
done
python sft.py --init_from $A --format anchored --out_dir runs/lr3/anchored_replay $SFT --lr 3e-3 --replay 1 --seed 0
python sft.py --init_from $B --format anchored --out_dir runs/lr3/baseB_anchored_s0 $SFT --lr 3e-3 --seed 0

# the evaluations (the cpu preset's settings)
EVAL="--num_samples 100 --base_arm base --annotated_base_arm base_annotated --threads 1 --top_p 0.9 --no_repeat_ngram 8"
python eval_diversity.py --ckpts base=$P base_annotated=$A \
  sft=runs/lr3/standard_s0,runs/lr3/standard_s1,runs/lr3/standard_s2 \
  anchored=runs/lr3/anchored_s0,runs/lr3/anchored_s1,runs/lr3/anchored_s2 \
  --out runs/lr3/eval $EVAL  # committed as eval_lr3e-3
python eval_diversity.py --ckpts base=$P base_annotated=$A \
  sft=runs/lr3/standard_s0,runs/lr3/standard_s1,runs/lr3/standard_s2 \
  anchored=runs/lr3/anchored_kl anchored_replay=runs/lr3/anchored_replay --out runs/lr3/eval_extras $EVAL  # committed as eval_lr3e-3_extras
python eval_diversity.py --ckpts base=$P base_annotated=$A \
  sft=runs/lr3/standard_s0,runs/lr3/standard_s1,runs/lr3/standard_s2 \
  anchored=runs/lr3/anchored_kl,runs/lr3/anchored_kl_s1,runs/lr3/anchored_kl_s2 --out runs/lr3/eval_kl3 $EVAL  # committed as eval_lr3e-3_kl
python eval_diversity.py --ckpts base=$P base_annotated=$A \
  sft=runs/r2/standard_s0,runs/r2/standard_s1,runs/r2/standard_s2 \
  anchored=runs/r2/anchored_s0,runs/r2/anchored_s1,runs/r2/anchored_s2 --out runs/r2/eval $EVAL  # committed as eval_20k
python eval_diversity.py --ckpts base=$P base_annotated=$B \
  sft=runs/cpu/cpu-4l128/sft_standard,runs/cpu/cpu-4l128/sft_standard_seed1,runs/cpu/cpu-4l128/sft_standard_seed2 \
  anchored=runs/curve/ann_s1338_sft0 anchored_lr3e-3=runs/lr3/baseB_anchored_s0 --out runs/baseB/eval $EVAL  # committed as eval_baseB

# the anchor-KL extra at 3e-3 at the smaller sizes (from the worktree at 95959ce, after
# results/cpu-lr3e-3's run, whose runs/cpu/<size>/sft_standard are its SFT runs at 3e-3)
for size in cpu-4l64 cpu-4l96; do
  python sft.py --init_from runs/cpu/$size/base_ann --format anchored --out_dir runs/klladder/$size-kl --n_sft_examples 10000 --lr 3e-3 --anchor_kl 1 --seed 0
  python eval_diversity.py --ckpts base=runs/cpu/$size/base_plain base_annotated=runs/cpu/$size/base_ann \
    sft=runs/cpu/$size/sft_standard anchored=runs/klladder/$size-kl --out runs/klladder/$size-eval $EVAL  # committed as eval_lr3e-3_kl_$size
done
