"""ML building blocks of the data plane. torch/diffusers/transformers are imported inside functions only."""
