# Annotation replay and the anchor KL together (sft.py --replay 1 --anchor_kl 1) at 4L/128, three seeds, on
# the cpu preset's bases, evaluated as the cpu preset evaluates, with the rows the measures need.
# Run from the repository root after `python reproduce.py --preset cpu` and the three SFT runs:
#   python sft.py --init_from runs/cpu/cpu-4l128/base_ann --format anchored --out_dir runs/science/replay_kl/s0 \
#     --n_sft_examples 10000 --lr 1e-3 --anchor_kl 1 --replay 1 --seed 0        (and --seed 1, 2 into .../s1, .../s2)
B=runs/cpu/cpu-4l128
python eval_diversity.py --ckpts base=$B/base_plain base_annotated=$B/base_ann sft=$B/sft_standard \
  anchored_replay_kl=runs/science/replay_kl/s0,runs/science/replay_kl/s1,runs/science/replay_kl/s2 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored_replay_kl \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 1 --out runs/science/replay_kl/eval
