"""bertlab: BERT pre-training and fine-tuning with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
