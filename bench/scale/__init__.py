"""``make bench-scale``: every staff page on a year of 1,000 hotels against one small hotel
(``python -m bench.scale --help``; docs/scale.md, "Measuring")."""
