"""Data: MMAction2 pipelines built from the protocol, and the clip dataset over prepared lists."""
