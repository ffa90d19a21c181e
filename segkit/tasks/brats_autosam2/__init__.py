"""AutoSAM2: brain tumour sub-regions from four MRI contrasts (3D UNet + a frozen SAM on chosen slices)."""
