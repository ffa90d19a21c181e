"""Task cc_fodf: corpus callosum from diffusion MRI peaks (SC2S-Net)."""
