"""ais_ncct: AISCT-SAM acute ischaemic stroke lesion segmentation on non-contrast head CT."""
