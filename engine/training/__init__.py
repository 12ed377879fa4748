"""Training what the engine can learn from a user's own photos (``reid-engine train ...``).

- :mod:`.checkpoint`      reading and atomically writing descriptor checkpoints
- :mod:`.descriptor`      photos → detected regions → patch pairs (image vs randomly warped copy)
- :mod:`.hardnet_loss`    HardNet's hardest-in-batch loss; FPR95 and top-1 patch retrieval
- :mod:`.train_descriptor` the training loop behind ``reid-engine train descriptor``
"""
