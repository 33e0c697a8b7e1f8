# CUDA runtime image for training on GPUs:
#   docker build -t zoo .
#   docker run --gpus all -v $PWD/datasets:/zoo/datasets -v $PWD/outputs:/zoo/outputs zoo model=yolo
#   docker run --gpus all --entrypoint torchrun zoo --nproc_per_node=8 train.py model=resnet50 data=cifar10
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /zoo
COPY pyproject.toml README.md ./
COPY zoo ./zoo
RUN pip install .
COPY train.py evaluate.py predict.py ./
COPY datasets/README.md ./datasets/README.md

ENTRYPOINT ["python", "train.py"]
