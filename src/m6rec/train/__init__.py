"""Training utilities shared by the torch models: device, seeding, batching, early stopping,
progress (`loop`) and losses (`losses`). Importing this package does not import torch."""
