"""Training step time and memory against Hugging Face: see detr/bench/training.py
(also `detr benchmark training`)."""

from detr.bench.training import main

if __name__ == "__main__":
    main()
