"""Data layer: datasets, mask generators, corruption synthesis, the LightningDataModule, previews."""
