# The quality tag at 4L/128: the cpu preset's 4L/128 recipe (titled build, bases, SFT at
# --n_sft_examples 10000 --lr 1e-3, evaluation at K = 100, top-p 0.9, no 8-token run twice) on a build
# whose annotations end with the document's quality (data.py --quality_tag 1: 'poor' for the 20% corrupted
# documents, 'good' for the rest). The plain shards are byte for byte the untagged build's, so the plain
# base and standard SFT are the cpu preset's. As run on the 2-core Xeon: two jobs at a time, one thread
# each (OMP_NUM_THREADS=1). From the repository root.
set -e
R=runs/tag
S="--n_sft_examples 10000 --lr 1e-3"
python data.py --out_dir $R/data --titled 0.5 --quality_tag 1
python pretrain.py --preset cpu-4l128 --data_dir $R/data --out_dir $R/base_ann --annotations      # beside the next
python pretrain.py --preset cpu-4l128 --data_dir $R/data --out_dir $R/base_plain --no-annotations
for s in 0 1 2; do
  python sft.py $S --init_from $R/base_ann --format anchored --seed $s --out_dir $R/sft_anchored_s$s
  python sft.py $S --init_from $R/base_plain --format standard --seed $s --out_dir $R/sft_standard_s$s
done
python sft.py $S --init_from $R/base_ann --format anchored --anchor_kl 1 --seed 0 --out_dir $R/sft_anchored_kl
python eval_diversity.py --ckpts base=$R/base_plain base_annotated=$R/base_ann \
  sft=$R/sft_standard_s0,$R/sft_standard_s1,$R/sft_standard_s2 \
  anchored=$R/sft_anchored_s0,$R/sft_anchored_s1,$R/sft_anchored_s2 \
  anchored_kl=$R/sft_anchored_kl \
  sft_sweep=$R/sft_standard_s0:temperature=0.6,0.8,1.0,1.1:top_p=1.0:no_repeat_ngram=0 \
  anchored_sweep=$R/sft_anchored_s0:temperature=0.6,0.8,1.0,1.1:top_p=1.0:no_repeat_ngram=0 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out $R/eval
# the base writing with its tag pinned (good / poor) or its own
PYTHONPATH=. python results/science/quality_tag/base_by_tag.py $R/base_ann 200 > results/science/quality_tag/base_by_tag.txt
# two more seeds of the anchor-KL extra, and their evaluation (extras/ in this folder)
for s in 1 2; do
  python sft.py $S --init_from $R/base_ann --format anchored --anchor_kl 1 --seed $s --out_dir $R/sft_anchored_kl_s$s
done
python eval_diversity.py --ckpts base=$R/base_plain base_annotated=$R/base_ann sft=$R/sft_standard_s0 \
  anchored_kl=$R/sft_anchored_kl,$R/sft_anchored_kl_s1,$R/sft_anchored_kl_s2 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored_kl \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out $R/eval_extras
# the paper's mask: the annotation's keys in the loss in 10% of the examples (key_share/ in this folder)
for s in 0 1 2; do
  python sft.py $S --init_from $R/base_ann --format anchored --key_share 0.1 --seed $s --out_dir $R/sft_anchored_keys0.1_s$s
done
python eval_diversity.py --ckpts base=$R/base_plain base_annotated=$R/base_ann \
  sft=$R/sft_standard_s0,$R/sft_standard_s1,$R/sft_standard_s2 \
  anchored=$R/sft_anchored_keys0.1_s0,$R/sft_anchored_keys0.1_s1,$R/sft_anchored_keys0.1_s2 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out $R/eval_keys
# no annotation value in the loss, the pinned ones included (no_pinned_values/ in this folder)
for s in 0 1 2; do
  python sft.py $S --init_from $R/base_ann --format anchored --no-pinned_values --seed $s --out_dir $R/sft_anchored_nopin_s$s
done
python eval_diversity.py --ckpts base=$R/base_plain base_annotated=$R/base_ann \
  sft=$R/sft_standard_s0,$R/sft_standard_s1,$R/sft_standard_s2 \
  anchored=$R/sft_anchored_nopin_s0,$R/sft_anchored_nopin_s1,$R/sft_anchored_nopin_s2 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out $R/eval_nopin
# the paper-literal arm at a lower SFT LR (lr6e-4/ in this folder)
for s in 0 1 2; do
  python sft.py --n_sft_examples 10000 --lr 6e-4 --init_from $R/base_ann --format anchored --seed $s --out_dir $R/sft_anchored_lr6e-4_s$s
done
python eval_diversity.py --ckpts base=$R/base_plain base_annotated=$R/base_ann \
  sft=$R/sft_standard_s0,$R/sft_standard_s1,$R/sft_standard_s2 \
  anchored=$R/sft_anchored_lr6e-4_s0,$R/sft_anchored_lr6e-4_s1,$R/sft_anchored_lr6e-4_s2 \
  --base_arm base --annotated_base_arm base_annotated --sft_arm sft --anchored_arm anchored \
  --num_samples 100 --top_p 0.9 --no_repeat_ngram 8 --threads 2 --out $R/eval_lr6e-4
