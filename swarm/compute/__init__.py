"""The compute role: input checks, bidding, the execution queue and result streaming."""
