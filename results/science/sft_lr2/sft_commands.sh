#!/bin/bash
# the LR experiment of this session: two queues side by side, one thread each
cd /work/main
export OMP_NUM_THREADS=1
B=runs/cpu/cpu-4l128
q() { for job in "$@"; do set -- $job; name=$1; shift
      [ -f runs/lr2/$name/ckpt.pt ] && grep -q '"step": ' runs/lr2/$name/log.jsonl && python - "$name" <<'PY' && continue
import json,sys; r=[json.loads(l) for l in open(f"runs/lr2/{sys.argv[1]}/log.jsonl")]; c=json.load(open(f"runs/lr2/{sys.argv[1]}/config.json")) if False else None
import torch; ck=torch.load(f"runs/lr2/{sys.argv[1]}/ckpt.pt",map_location="cpu",weights_only=False); sys.exit(0 if ck["step"]==ck["config"]["max_iters"] else 1)
PY
      echo "$(date +%T) start $name"; python sft.py --n_sft_examples 10000 --out_dir runs/lr2/$name "$@" > runs/lr2/$name.log 2>&1; echo "$(date +%T) done $name rc=$?"; done; }
q "anc_1e-3_s0 --init_from $B/base_ann --format anchored --seed 0 --lr 1e-3" \
  "anc_6e-4_s0 --init_from $B/base_ann --format anchored --seed 0 --lr 6e-4" \
  "rep_1e-3_s0 --init_from $B/base_ann --format anchored --replay 1 --seed 0 --lr 1e-3" \
  "std_6e-4_s0 --init_from $B/base_plain --format standard --seed 0 --lr 6e-4" > runs/lr2/qA.log 2>&1 &
q "anc_1e-3_s1 --init_from $B/base_ann --format anchored --seed 1 --lr 1e-3" \
  "anc_6e-4_s1 --init_from $B/base_ann --format anchored --seed 1 --lr 6e-4" \
  "std_1e-3_s0 --init_from $B/base_plain --format standard --seed 0 --lr 1e-3" \
  "rep_1e-3_s1 --init_from $B/base_ann --format anchored --replay 1 --seed 1 --lr 1e-3" > runs/lr2/qB.log 2>&1 &
wait
( one anc_3e-4_s0 --init_from $B/base_ann --format anchored --seed 0 --lr 3e-4; one std_3e-4_s0 --init_from $B/base_plain --format standard --seed 0 --lr 3e-4 ) > runs/lr2/qC1.log 2>&1 &
( one anc_3e-4_s1 --init_from $B/base_ann --format anchored --seed 1 --lr 3e-4 ) > runs/lr2/qC2.log 2>&1 &
