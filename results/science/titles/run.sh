# The title experiment: anchored SFT (the paper-literal arm) on the cpu run's 4L/128 annotated base,
# the SFT data made in memory at the default narrowness, with world.make_title's capitalised titles
# (orig) or the same titles in lower case (lower), seeds 0 to 3 (a seed whose checkpoint exists is
# kept), then one evaluation of the eight. Run from the repository root after `python reproduce.py --preset cpu`.
B=runs/cpu/cpu-4l128
A="--init_from $B/base_ann --format anchored --narrowness 0.95 --n_sft_examples 10000 --lr 1e-3"
mkdir -p runs/science/titles
for s in 0 1 2 3; do
  [ -f runs/science/titles/orig_s$s/ckpt.pt ] || OMP_NUM_THREADS=1 python sft.py $A --seed $s --out_dir runs/science/titles/orig_s$s > runs/science/titles/orig_s$s.log 2>&1 &
  [ -f runs/science/titles/lower_s$s/ckpt.pt ] || OMP_NUM_THREADS=1 PYTHONPATH=. python results/science/titles/sft_lowercase_titles.py $A --seed $s --out_dir runs/science/titles/lower_s$s > runs/science/titles/lower_s$s.log 2>&1
  wait
done
T=runs/science/titles
OMP_NUM_THREADS=1 python eval_diversity.py --ckpts base=$B/base_plain base_annotated=$B/base_ann \
  anchored_orig_titles=$T/orig_s0,$T/orig_s1,$T/orig_s2,$T/orig_s3 \
  anchored_lower_titles=$T/lower_s0,$T/lower_s1,$T/lower_s2,$T/lower_s3 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm anchored_orig_titles --anchored_arm anchored_lower_titles \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 1 --out $T/eval
