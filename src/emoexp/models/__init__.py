"""Plain ``nn.Module`` networks per modality; heads are sized by the label scheme."""
