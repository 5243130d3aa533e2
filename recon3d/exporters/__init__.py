"""A built dataset in the formats other trainers read (``recon3d export``)."""
