# Titled pretraining at 4L/128: the cpu preset's 4L/128 recipe (bases, SFT at --n_sft_examples 10000
# --lr 1e-3, evaluation at K = 100, top-p 0.9, no 8-token run twice) on a build whose pretraining docs
# open half the time with the house title line, compared with results/cpu-untitled (the same recipe, untitled).
# As run on the 2-core EPYC: two jobs at a time, one thread each (OMP_NUM_THREADS=1); the evaluations
# alone, on two threads. From the repository root.
set -e
R=runs/titled
S="--n_sft_examples 10000 --lr 1e-3"
python data.py --out_dir $R/data --titled 0.5
python pretrain.py --preset cpu-4l128 --data_dir $R/data --out_dir $R/base_ann --annotations      # beside the next
python pretrain.py --preset cpu-4l128 --data_dir $R/data --out_dir $R/base_plain --no-annotations
for s in 0 1 2; do
  python sft.py $S --init_from $R/base_ann --format anchored --seed $s --out_dir $R/sft_anchored_s$s
  python sft.py $S --init_from $R/base_plain --format standard --seed $s --out_dir $R/sft_standard_s$s
done
python sft.py $S --init_from $R/base_ann --format anchored --anchor_kl 1 --seed 0 --out_dir $R/sft_anchored_kl
python sft.py $S --init_from $R/base_ann --format anchored --anchor_kl 1 --replay 1 --seed 0 --out_dir $R/sft_anchored_replay_kl
# the evaluation whose files are in this folder (summary.json, samples.jsonl.gz, ...)
python eval_diversity.py --ckpts base=$R/base_plain base_annotated=$R/base_ann \
  sft=$R/sft_standard_s0,$R/sft_standard_s1,$R/sft_standard_s2 \
  anchored=$R/sft_anchored_s0,$R/sft_anchored_s1,$R/sft_anchored_s2 \
  anchored_kl=$R/sft_anchored_kl anchored_replay_kl=$R/sft_anchored_replay_kl \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out $R/eval
# two more seeds of each extra, and their evaluation (extras/ in this folder)
for s in 1 2; do
  python sft.py $S --init_from $R/base_ann --format anchored --anchor_kl 1 --seed $s --out_dir $R/sft_anchored_kl_s$s
  python sft.py $S --init_from $R/base_ann --format anchored --anchor_kl 1 --replay 1 --seed $s --out_dir $R/sft_anchored_replay_kl_s$s
done
python eval_diversity.py --ckpts base=$R/base_plain base_annotated=$R/base_ann sft=$R/sft_standard_s0 \
  anchored_kl=$R/sft_anchored_kl,$R/sft_anchored_kl_s1,$R/sft_anchored_kl_s2 \
  anchored_replay_kl=$R/sft_anchored_replay_kl,$R/sft_anchored_replay_kl_s1,$R/sft_anchored_replay_kl_s2 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored_kl \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out $R/eval_extras
# the forced-title check of the previous entry, on this build's anchor-KL arm and paper-literal seed 0
PYTHONPATH=. python results/science/forced_title/forced_title.py 128 $R/sft_anchored_kl $R/sft_anchored_s0
# the two smaller sizes, as the cpu preset trains them (one SFT seed), for ladder.md: cpu-4l96/ and cpu-4l64/ here
for size in cpu-4l96 cpu-4l64; do
  python pretrain.py --preset $size --data_dir $R/data --out_dir $R/$size/base_ann --annotations    # beside the next
  python pretrain.py --preset $size --data_dir $R/data --out_dir $R/$size/base_plain --no-annotations
  python sft.py $S --init_from $R/$size/base_plain --format standard --seed 0 --out_dir $R/$size/sft_standard
  python sft.py $S --init_from $R/$size/base_ann --format anchored --seed 0 --out_dir $R/$size/sft_anchored
  python eval_diversity.py --ckpts base=$R/$size/base_plain base_annotated=$R/$size/base_ann \
    sft=$R/$size/sft_standard anchored=$R/$size/sft_anchored \
    --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored \
    --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 1 --out $R/$size/eval
done
