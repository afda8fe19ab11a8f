"""The connector runner (docs/design.md §7): config, loops, leases, cursors and poll outcomes."""
