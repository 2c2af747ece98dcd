# The 4L/128 SFT checkpoints the cpu preset trained at LR 1e-3 (three seeds of both arms, the replay
# extra, the plain-base ablation), evaluated without base rows: their bases were lost (results/README.md).
# Run from the repository root. The "base" of the command is the SFT arm, so the collapse columns of
# summary.md read against SFT, not against a base.
B=runs/cpu/cpu-4l128
python eval_diversity.py --ckpts sft=$B/sft_standard,$B/sft_standard_seed1,$B/sft_standard_seed2 \
  anchored=$B/sft_anchored,$B/sft_anchored_seed1,$B/sft_anchored_seed2 anchored_replay=$B/sft_anchored_replay \
  anchored_plain_base=$B/sft_anchored_plainbase \
  --base_arm sft --sft_arm sft --anchored_arm anchored \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out runs/lr3/eval
