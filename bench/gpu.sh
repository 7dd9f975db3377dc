# The GPU run of bench.generation and bench.policy, both arms in one call, as sent to the device (bench/README.md).
#   bash bench/gpu.sh prepare     here: the embedded model's config and tokenizer into .gpu/, the missing wheels into .whl/
#   bash bench/gpu.sh             there: device.run("bash bench/gpu.sh", carry=[".whl", ".gpu"]); results under $OUT
#   bash bench/gpu.sh half        there, a second call: the same arms on a ~0.5B model (Qwen2-0.5B's body, 24 layers,
#                                 hidden 896, over the embedded tokenizer's 49,152 tokens, untied: 446M parameters)
#   ARMS="trl ours-lora" STEPS=20 GENERATION=1 ARM_TIMEOUT=150: which arms, how many steps, also bench.generation
# The weights cannot travel (98 MB GGUF, 64 MB limit): both arms start from random weights in the same architecture.
cd "$(dirname "$0")/.." || exit 1
if [ "$1" = prepare ]; then
  mkdir -p .gpu/smollm2 .whl
  folder=$(.venv/bin/python -c "from training import EMBEDDED_GENERATOR, resolve_model_path; print(resolve_model_path(EMBEDDED_GENERATOR))")
  cp "$folder"/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} .gpu/smollm2/
  mkdir -p .gpu/half && cp .gpu/smollm2/{generation_config.json,tokenizer.json,tokenizer_config.json,chat_template.jinja} .gpu/half/
  .venv/bin/python -c "
from transformers import AutoConfig, Qwen2Config
tokens = AutoConfig.from_pretrained('.gpu/smollm2')
Qwen2Config(vocab_size=tokens.vocab_size, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
            num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=tokens.bos_token_id,
            eos_token_id=tokens.eos_token_id, pad_token_id=tokens.pad_token_id).save_pretrained('.gpu/half')" || exit 1
  for p in trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 peft==0.21.2 sqlite-utils==4.2.1 sqlite-fts4 click-default-group; do
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
  done
  exit 0
fi
MODEL=smollm2; [ "$1" = half ] && MODEL=half  # the half-billion model: fewer steps by default, the same arms
[ "$MODEL" = half ] && STEPS=${STEPS:-5}
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
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained('.gpu/$MODEL'))
print('.gpu/$MODEL:', round(sum(p.numel() for p in model.parameters()) / 1e6), 'M parameters, random weights')
model.save_pretrained('.gpu/$MODEL')
" || exit 1
if [ -n "$GENERATION" ]; then
  timeout 100 $PY -m bench.generation --model .gpu/smollm2 --repeats 3 --out generation_gpu 2>"$OUT/generation.err" | tail -n 25
  cp bench/out/generation_gpu.json "$OUT/" 2>/dev/null
fi
# Arms run with the compiled static-cache decoding on (RLHF_COMPILED_DECODE=1, opt-in in the app until measured);
# an arm named ...-eager runs the decode loop instead: what the compiled path buys, on the same GPU.
arms="trl ours-lora ours-full ours-lora-eager"; [ "$MODEL" = half ] && arms="trl ours-lora ours-full"
for arm in ${ARMS:-$arms}; do
  start=$(date +%s)
  compiled=1; [ "${arm%-eager}" != "$arm" ] && compiled=0
  name=policy_gpu_$arm; [ "$MODEL" = half ] && name=policy_gpu_half_$arm
  RLHF_COMPILED_DECODE=$compiled timeout ${ARM_TIMEOUT:-130} $PY -m bench.policy --arm "${arm%-eager}" --steps $STEPS --model .gpu/$MODEL \
    >"$OUT/$name.json" 2>"$OUT/$name.err"
  echo "$arm: rc $? in $(( $(date +%s) - start )) s"; tail -c 700 "$OUT/$name.json"; echo; grep -i "warn\|error" "$OUT/$name.err" | tail -n 3
done
