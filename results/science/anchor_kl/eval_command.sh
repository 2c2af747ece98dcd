# The anchored_kl extra (sft.py --anchor_kl 1) at 4L/128, three seeds, on the cpu preset's bases, evaluated
# as the cpu preset evaluates (K = 100, top-p 0.9, no repeated 8-gram), with the rows the measures
# need: the plain base (D base), the annotated base (gate, prior drift) and standard SFT seed 0.
# Run from the repository root after `python reproduce.py --preset cpu` and the three SFT runs:
#   python sft.py --init_from runs/cpu/cpu-4l128/base_ann --format anchored --out_dir runs/science/anchor_kl/s0 \
#     --n_sft_examples 10000 --lr 1e-3 --anchor_kl 1 --seed 0        (and --seed 1, 2 into .../s1, .../s2)
B=runs/cpu/cpu-4l128
python eval_diversity.py --ckpts base=$B/base_plain base_annotated=$B/base_ann sft=$B/sft_standard \
  anchored_kl=runs/science/anchor_kl/s0,runs/science/anchor_kl/s1,runs/science/anchor_kl/s2 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored_kl \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 1 --out runs/science/anchor_kl/eval
