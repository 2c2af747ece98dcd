# The evaluation of results/science/sft_lr2 (run from the repository root; checkpoints in runs/lr2,
# the bases in runs/cpu/cpu-4l128). K = 100, the declared story setting (top-p 0.9, no 8-token run twice).
B=runs/cpu/cpu-4l128
R=runs/lr2
python eval_diversity.py --ckpts base=$B/base_plain base_annotated=$B/base_ann \
  sft=$R/std_3e-4_s0 sft_lr6e-4=$R/std_6e-4_s0 sft_lr1e-3=$R/std_1e-3_s0 \
  anchored=$R/anc_3e-4_s0,$R/anc_3e-4_s1 anchored_lr6e-4=$R/anc_6e-4_s0,$R/anc_6e-4_s1 \
  anchored_lr1e-3=$R/anc_1e-3_s0,$R/anc_1e-3_s1 anchored_replay_lr1e-3=$R/rep_1e-3_s0,$R/rep_1e-3_s1 \
  --base_arm base --sft_arm sft --anchored_arm anchored --annotated_base_arm base_annotated \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out runs/lr2/eval
