"""Media: reading source videos and masks, writing videos, grids and atomic output folders."""
