"""Code every Payment Queue function uses: domain, services, ports and their adapters."""
