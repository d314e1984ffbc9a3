"""The four Lightning loader hooks of a DataModule whose splits are named train / val / test."""

from __future__ import annotations

from torch.utils.data import DataLoader


class SplitLoaders:
    """Mixin: train shuffled at `batch_size`; val, test and predict (the test split) in file order at
    `eval_batch_size`. The DataModule supplies `_loader(split, batch_size, shuffle)`."""

    batch_size: int
    eval_batch_size: int

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in file order."""
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order."""
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split, for `trainer.predict`."""
        return self._loader("test", self.eval_batch_size, shuffle=False)
