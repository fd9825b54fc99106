"""The stage progress bar counts optimizer steps to max_steps across epochs, with the loss."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from msl_ablate.training.progress import StageProgressBar


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_one_bar_per_stage_counts_steps_across_epochs(tmp_path, capfd):
    data = DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)  # 2 batches per epoch
    trainer = L.Trainer(
        max_steps=5, logger=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[StageProgressBar("align")], default_root_dir=tmp_path, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(_Tiny(), data)
    out = capfd.readouterr().out.replace("\r", "\n")
    assert trainer.global_step == 5 and trainer.current_epoch >= 2  # the loader restarted
    assert "align: 100%" in out and "5/5" in out and "loss=" in out
    assert "Epoch" not in out and "Training" not in out and "v_num" not in out
