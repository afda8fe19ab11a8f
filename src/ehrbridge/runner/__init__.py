"""The connector runner (DESIGN §7): config, loops, leases, cursors and poll outcomes."""
