"""The networks and what training them needs: U-Nets (`unet`), losses, optimisers, learning-rate
schedules, augmentation, the channels a run sees (`inputs`), torch tensors of split samples
(`tensors`) and the checkpoint format (`checkpoints`)."""
