"""A registry that exercises every corner of the AsyncAPI builder."""
