export OMP_NUM_THREADS=1
B=runs/cpu/cpu-4l128
python eval_diversity.py --ckpts base_annotated=$B/base_ann anchored=$B/sft_anchored,$B/sft_anchored_seed1 \
  anchored_lr1e-4=$B/sft_anchored_lr1e-4_s0,$B/sft_anchored_lr1e-4_s1 anchored_lr1e-3=$B/sft_anchored_lr1e-3_s0,$B/sft_anchored_lr1e-3_s1 \
  --base_arm base_annotated --anchored_arm anchored --annotated_base_arm base_annotated \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 1 --out runs/eval_lr
