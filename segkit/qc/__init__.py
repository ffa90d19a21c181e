"""Quality-control outputs: PNG overlays of masks on their images."""
