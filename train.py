"""Train one emotion-recognition experiment: ``python train.py modality=audio model=lstm``.

A thin Hydra entry point; the work is in :func:`emoexp.train.train`.
"""

from emoexp.train import main

if __name__ == "__main__":
    main()
