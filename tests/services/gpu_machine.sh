#!/usr/bin/env bash
# The GPU checks on a lent GPU machine (/work/.library/device/README.md), prepared so a session
# spends its few device minutes running them, not preparing them. Two halves:
#   tests/services/gpu_machine.sh wheels   HERE: download into .whl/ (ignored by git) the wheels
#                                          of the packages the machine's image lacks (Python 3.12;
#                                          its torch, lightning, transformers, peft, timm are used)
#   tests/services/gpu_machine.sh check    THERE (run's command, carry [".whl"]): install them,
#                                          run the shaped step (bench --shape), the `gpu` tests
#                                          and the bench on CUDA; logs in $OUT (under 10 min)
# Not yet run on a GPU machine (none was lent when it was written, 2026-12-07).
set -euo pipefail
cd "$(dirname "$0")/../.."

# What the project imports that the image does not have (KINDS.md's package list), with their
# own dependencies that it lacks too; the CUDA 12 libraries torch would pull are left out.
PACKAGES=(open-clip-torch ftfy wcwidth hydra-core omegaconf antlr4-python3-runtime
  hydra-joblib-launcher hydra-submitit-launcher submitit mlflow-skinny sqlalchemy alembic mako
  cachetools databricks-sdk google-auth pyasn1 pyasn1-modules cryptography cffi pycparser
  fastapi starlette uvicorn pydantic pydantic-core annotated-types typing-inspection
  python-multipart gitpython gitdb smmap importlib-metadata opentelemetry-api opentelemetry-sdk
  opentelemetry-proto opentelemetry-semantic-conventions python-dotenv sqlparse)

wheels() {
    mkdir -p .whl
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    # omegaconf's antlr4 runtime is published as a source archive only: build its wheel here.
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
    python3 -m pip download -q --no-deps --find-links .whl --only-binary=:all: \
        --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${PACKAGES[@]}"
    du -sh .whl  # must stay well under the 64 MiB a call carries
}

check() {
    : "${OUT:?run this on the GPU machine, where \$OUT is set}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD/src:$PWD:/tmp/site" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
    python3 -c "import torch, lightning, transformers; print(torch.__version__, \
lightning.__version__, transformers.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
    set +e
    # The zoo's twins are built in seconds, not trained: only speed is measured here.
    export MSL_ABLATE_ZOO_MAX_STEPS=3
    # Issue 20's GPU numbers first: a SigLIP-so400m + Phi-2 stage-2 step, random weights, bf16
    # (tokens/s, MFU, peak memory), without and with gradient checkpointing.
    timeout 120 python3 -m msl_ablate.cli bench --shape siglip_so400m_phi2 --batch-size 4 \
        --steps 10 --out "$OUT/b4" trainer=gpu 2>&1 | tail -30 | tee "$OUT/shape_b4.log"
    timeout 120 python3 -m msl_ablate.cli bench --shape siglip_so400m_phi2 --batch-size 16 \
        --steps 10 --out "$OUT/b16_ckpt" trainer=gpu \
        strategy.stages.finetune.gradient_checkpointing=true 2>&1 | tail -30 \
        | tee "$OUT/shape_b16_ckpt.log"
    timeout 180 python3 -m pytest -m gpu -x -q -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.log"
    timeout 150 python3 -m msl_ablate.cli bench --steps 30 --out "$OUT/bench" preset=demo \
        trainer=gpu 2>&1 | tail -40 | tee "$OUT/bench.log"
    return 0
}

case "${1:-}" in
    wheels) wheels ;;
    check) check ;;
    *) echo "usage: $0 wheels|check" >&2; exit 2 ;;
esac
