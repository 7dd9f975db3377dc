# The GPU run of bench.generation and bench.policy, both arms in one call, as sent to the device (bench/README.md).
#   bash bench/gpu.sh prepare     here: the embedded model's config and tokenizer into .gpu/, the missing wheels into .whl/
#   bash bench/gpu.sh             there: device.run("bash bench/gpu.sh", carry=[".whl", ".gpu"]); results under $OUT
#   ARMS="trl ours-lora" STEPS=20 GENERATION=1 ARM_TIMEOUT=150: which arms, how many steps, also bench.generation
# The weights cannot travel (98 MB GGUF, 64 MB limit): both arms start from random weights in the same architecture.
cd "$(dirname "$0")/.." || exit 1
if [ "$1" = prepare ]; then
  mkdir -p .gpu/smollm2 .whl
  folder=$(.venv/bin/python -c "from training import EMBEDDED_GENERATOR, resolve_model_path; print(resolve_model_path(EMBEDDED_GENERATOR))")
  cp "$folder"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} .gpu/smollm2/
  for p in trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 peft==0.21.2 sqlite-utils==4.2.1 sqlite-fts4 click-default-group; do
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
  done
  exit 0
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OUT=${OUT:-/tmp/out} PY=${PY:-python3} STEPS=${STEPS:-20}
mkdir -p "$OUT"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, transformers, peft, trl, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__)"
$PY -c "
import torch
from transformers import AutoConfig, AutoModelForCausalLM
torch.manual_seed(0)
AutoModelForCausalLM.from_config(AutoConfig.from_pretrained('.gpu/smollm2')).save_pretrained('.gpu/smollm2')
" || exit 1
if [ -n "$GENERATION" ]; then
  timeout 100 $PY -m bench.generation --model .gpu/smollm2 --repeats 3 --out generation_gpu 2>"$OUT/generation.err" | tail -n 25
  cp bench/out/generation_gpu.json "$OUT/" 2>/dev/null
fi
# Arms run with the compiled static-cache decoding on (RLHF_COMPILED_DECODE=1, opt-in in the app until measured);
# an arm named ...-eager runs the decode loop instead: what the compiled path buys, on the same GPU.
for arm in ${ARMS:-trl ours-lora ours-full ours-lora-eager}; do
  start=$(date +%s)
  compiled=1; [ "${arm%-eager}" != "$arm" ] && compiled=0
  RLHF_COMPILED_DECODE=$compiled timeout ${ARM_TIMEOUT:-130} $PY -m bench.policy --arm "${arm%-eager}" --steps $STEPS --model .gpu/smollm2 \
    >"$OUT/policy_gpu_$arm.json" 2>"$OUT/policy_gpu_$arm.err"
  echo "$arm: rc $? in $(( $(date +%s) - start )) s"; tail -c 700 "$OUT/policy_gpu_$arm.json"; echo; grep -i "warn\|error" "$OUT/policy_gpu_$arm.err" | tail -n 3
done
