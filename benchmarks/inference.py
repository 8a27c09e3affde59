"""Inference speed against Hugging Face: see detr/bench/inference.py (also `detr benchmark inference`)."""

from detr.bench.inference import main

if __name__ == "__main__":
    main()
