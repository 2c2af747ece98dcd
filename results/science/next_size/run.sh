#!/bin/bash
# The commands behind results/science/next_size: the cpu preset's recipe at a fourth, larger size
# (4L/192, 6 heads of 32: 2.16M parameters, 2.1x the 4L/128 base) on the data of
# results/cpu-2026-12-07 (runs/cpu/data), at the 4L/128 base's tokens (5,400 steps of 8 x 512) and
# a peak LR of 2.5e-3 (the ladder's 4e-3 / 3.5e-3 / 3e-3 continued). One thread a job, two jobs at
# a time, on the 2-core AMX Xeon. From the repository root:
#   bash results/science/next_size/run.sh bases sfts evals seeds bases_k300 bases_k100_seeds second_base bases_x2 sfts_x2 seeds_x2 bases_x2_seeds
set -e
export OMP_NUM_THREADS=1
R=${RUNS:-/work/run/runs}; D=$R/cpu/data; N=$R/next
SFT="--n_sft_examples 10000 --data_dir $D --lr 1e-3"   # the cpu preset's SFT (reproduce.py)
STORY="--base_arm base --annotated_base_arm base_annotated --threads 1 --top_p 0.9 --no_repeat_ngram 8"  # arms, threads, the preset's story setting
EVAL="--num_samples 100 $STORY"

two_seeds() {  # two_seeds BASE NAME FORMAT [flags]: SFT seeds 1 and 2 side by side, into $N/NAME_seed1 and _seed2
  for s in 1 2; do
    python sft.py --init_from $1 --format $3 --out_dir $N/${2}_seed$s $SFT "${@:4}" --seed $s > $N/${2}_seed$s.log 2>&1 &
  done
  wait
}

read_bases() {  # read_bases PLAIN ANNOTATED OUT K [flags]: the two bases alone, K samples a prompt
  python eval_diversity.py --ckpts base=$1 base_annotated=$2 --num_samples $4 --out $3 $STORY "${@:5}"
}

bases() {  # ~40 min side by side
  python pretrain.py --preset cpu-4l128 --n_embd 192 --n_head 6 --lr 2.5e-3 --data_dir $D --out_dir $N/base_ann --annotations &
  python pretrain.py --preset cpu-4l128 --n_embd 192 --n_head 6 --lr 2.5e-3 --data_dir $D --out_dir $N/base_plain --no-annotations &
  wait
}

sfts() {  # the paper's arms (anchored over 3 seeds), two at a time
  python sft.py --init_from $N/base_plain --format standard --out_dir $N/sft_standard $SFT --seed 0 > $N/sft_standard.log 2>&1 &
  python sft.py --init_from $N/base_ann --format anchored --out_dir $N/sft_anchored $SFT --seed 0 > $N/sft_anchored.log 2>&1 &
  wait
  two_seeds $N/base_ann sft_anchored anchored
}

evals() {  # the cpu preset's evaluation settings, beside the anchor-KL extra's SFT; then the extra
           # at SFT LR 3e-3 (the best arm at 4L/128, results/science/pinned_copy) with standard SFT at
           # the same LR; each extra in the anchored column of its own evaluation
  python eval_diversity.py --ckpts base=$N/base_plain base_annotated=$N/base_ann sft=$N/sft_standard \
    anchored=$N/sft_anchored,$N/sft_anchored_seed1,$N/sft_anchored_seed2 --out $N/eval $EVAL > $N/eval.log 2>&1 &
  python sft.py --init_from $N/base_ann --format anchored --out_dir $N/sft_anchored_kl $SFT --anchor_kl 1 --seed 0 > $N/sft_anchored_kl.log 2>&1 &
  wait
  python sft.py --init_from $N/base_plain --format standard --out_dir $N/sft_standard_lr3e-3 $SFT --lr 3e-3 --seed 0 > $N/sft_standard_lr3e-3.log 2>&1 &
  python sft.py --init_from $N/base_ann --format anchored --out_dir $N/sft_anchored_kl_lr3e-3 $SFT --lr 3e-3 --anchor_kl 1 --seed 0 > $N/sft_anchored_kl_lr3e-3.log 2>&1 &
  wait
  python eval_diversity.py --ckpts base=$N/base_plain base_annotated=$N/base_ann sft=$N/sft_standard \
    anchored=$N/sft_anchored_kl --out $N/eval_kl $EVAL > $N/eval_kl.log 2>&1 &
  python eval_diversity.py --ckpts base=$N/base_plain base_annotated=$N/base_ann sft=$N/sft_standard_lr3e-3 \
    anchored=$N/sft_anchored_kl_lr3e-3 --out $N/eval_kl_lr3e-3 $EVAL > $N/eval_kl_lr3e-3.log 2>&1 &
  wait
}

seeds() {  # the anchor-KL extra at the preset's LR and standard SFT over 3 seeds; both evaluations again
           # with the 3 SFT seeds (eval and eval_kl above hold seed 0 of standard SFT only)
  two_seeds $N/base_ann sft_anchored_kl anchored --anchor_kl 1
  two_seeds $N/base_plain sft_standard standard
  STD=$N/sft_standard,$N/sft_standard_seed1,$N/sft_standard_seed2
  python eval_diversity.py --ckpts base=$N/base_plain base_annotated=$N/base_ann sft=$STD \
    anchored=$N/sft_anchored,$N/sft_anchored_seed1,$N/sft_anchored_seed2 --out $N/eval_3seeds $EVAL > $N/eval_3seeds.log 2>&1 &
  python eval_diversity.py --ckpts base=$N/base_plain base_annotated=$N/base_ann sft=$STD \
    anchored=$N/sft_anchored_kl,$N/sft_anchored_kl_seed1,$N/sft_anchored_kl_seed2 --out $N/eval_kl_3seeds $EVAL > $N/eval_kl_3seeds.log 2>&1 &
  wait
}


# The table and the plot (results/science/next_size/table.md, ladder.png), from the repository root:
#   D=results/science/next_size; python $D/table.py --png $D/ladder.png \
#     "paper arm@4L/64=results/cpu-2026-12-07/cpu-4l64:anchored" "paper arm@4L/96=results/cpu-2026-12-07/cpu-4l96:anchored" \
#     "paper arm@4L/128=results/cpu-2026-12-07/cpu-4l128:anchored" "paper arm@4L/192=$D/eval_3seeds:anchored" \
#     "anchor KL, LR 3e-3@4L/64=results/science/pinned_copy/eval_lr3e-3_kl_cpu-4l64:anchored" \
#     "anchor KL, LR 3e-3@4L/96=results/science/pinned_copy/eval_lr3e-3_kl_cpu-4l96:anchored" \
#     "anchor KL, LR 3e-3@4L/128=results/science/pinned_copy/eval_lr3e-3_kl:anchored" \
#     "anchor KL, LR 3e-3@4L/192=$D/eval_kl_lr3e-3:anchored" \
#     "anchor KL, LR 1e-3@4L/128=results/cpu-2026-12-07/cpu-4l128:anchored_kl" \
#     "anchor KL, LR 1e-3@4L/192=$D/eval_kl_3seeds:anchored" > $D/table.md
# The evaluations committed here: eval_3seeds, eval_kl_3seeds and eval_kl_lr3e-3 (eval and eval_kl, the
# first evaluations with one standard SFT seed, are superseded by the _3seeds ones and not committed).

bases_k300() {  # both sizes' bases read at K = 300 (the gate's 30 samples a field; one standard error ~0.02)
  C=$R/cpu/cpu-4l128
  read_bases $N/base_plain $N/base_ann $N/bases_k300_4l192 300 &
  read_bases $C/base_plain $C/base_ann $N/bases_k300_4l128 300 &
  wait
}

bases_k100_seeds() {  # the 4L/128 bases at K = 100 under two other sampling seeds (the evaluations' is 1337)
  C=$R/cpu/cpu-4l128
  for s in 1 2; do
    read_bases $C/base_plain $C/base_ann $N/bases_k100_4l128_seed$s 100 --seed $s &
  done
  wait
}

second_base() {  # the copy's robustness: a second annotated 4L/192 base (init seed 1338), one paper-arm SFT
                 # seed on it; two threads for the one job
  export OMP_NUM_THREADS=2
  python pretrain.py --preset cpu-4l128 --n_embd 192 --n_head 6 --lr 2.5e-3 --data_dir $D --out_dir $N/base_ann_s1338 \
    --annotations --seed 1338 > $N/base_ann_s1338.log 2>&1
  python sft.py --init_from $N/base_ann_s1338 --format anchored --out_dir $N/sft_anchored_base1338 $SFT --seed 0 \
    > $N/sft_anchored_base1338.log 2>&1
  python eval_diversity.py --ckpts base=$N/base_plain base_annotated=$N/base_ann_s1338 sft=$N/sft_standard \
    anchored=$N/sft_anchored_base1338 --out $N/eval_base1338 $EVAL --threads 2 > $N/eval_base1338.log 2>&1
}

bases_x2() {  # the next factor of tokens at this width: both 4L/192 bases on twice the tokens (10,800 steps
              # of 8 x 512, 44.2M slots, 20 per parameter), the same peak LR; then the paper arm, the
              # anchor-KL extra and standard SFT, one seed each, and one evaluation of them
  python pretrain.py --preset cpu-4l128 --n_embd 192 --n_head 6 --lr 2.5e-3 --max_iters 10800 --eval_interval 1800 \
    --data_dir $D --out_dir $N/base_ann_x2 --annotations > $N/base_ann_x2.log 2>&1 &
  python pretrain.py --preset cpu-4l128 --n_embd 192 --n_head 6 --lr 2.5e-3 --max_iters 10800 --eval_interval 1800 \
    --data_dir $D --out_dir $N/base_plain_x2 --no-annotations > $N/base_plain_x2.log 2>&1 &
  wait
}

sfts_x2() {
  python sft.py --init_from $N/base_plain_x2 --format standard --out_dir $N/sft_standard_x2 $SFT --seed 0 > $N/sft_standard_x2.log 2>&1 &
  python sft.py --init_from $N/base_ann_x2 --format anchored --out_dir $N/sft_anchored_x2 $SFT --seed 0 > $N/sft_anchored_x2.log 2>&1 &
  wait
  python sft.py --init_from $N/base_ann_x2 --format anchored --out_dir $N/sft_anchored_kl_x2 $SFT --anchor_kl 1 --seed 0 > $N/sft_anchored_kl_x2.log 2>&1 &
  read_bases $N/base_plain_x2 $N/base_ann_x2 $N/bases_k300_4l192_x2 300 > $N/bases_k300_4l192_x2.log 2>&1 &
  wait
  python eval_diversity.py --ckpts base=$N/base_plain_x2 base_annotated=$N/base_ann_x2 sft=$N/sft_standard_x2 \
    anchored=$N/sft_anchored_x2 anchored_kl=$N/sft_anchored_kl_x2 --out $N/eval_x2 $EVAL --threads 2 > $N/eval_x2.log 2>&1
}

seeds_x2() {  # seeds 1 and 2 of the paper arm and the anchor-KL extra on the 2x base; one evaluation of all three
              # seeds (eval_x2_3seeds, committed; sfts_x2's eval_x2, seed 0 alone, is superseded by it)
  two_seeds $N/base_ann_x2 sft_anchored_kl_x2 anchored --anchor_kl 1
  two_seeds $N/base_ann_x2 sft_anchored_x2 anchored
  python eval_diversity.py --ckpts base=$N/base_plain_x2 base_annotated=$N/base_ann_x2 sft=$N/sft_standard_x2 \
    anchored=$N/sft_anchored_x2,$N/sft_anchored_x2_seed1,$N/sft_anchored_x2_seed2 \
    anchored_kl=$N/sft_anchored_kl_x2,$N/sft_anchored_kl_x2_seed1,$N/sft_anchored_kl_x2_seed2 \
    --out $N/eval_x2_3seeds $EVAL --threads 2 > $N/eval_x2_3seeds.log 2>&1
}

bases_x2_seeds() {  # the 2x bases read again at K = 300 under two other sampling seeds (the evaluations' is 1337)
  for s in 1 2; do
    read_bases $N/base_plain_x2 $N/base_ann_x2 $N/bases_k300_4l192_x2_seed$s 300 --seed $s > $N/bases_k300_4l192_x2_seed$s.log 2>&1 &
  done
  wait
}

for stage in "$@"; do "$stage"; done
