"""``make bench-cost``: what one guest message costs hotelbot against a naive bot (issue 18 item 4)."""
