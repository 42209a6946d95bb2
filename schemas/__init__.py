"""Every orderhub contract, declared once: events, canonical order, topics, tables, statuses."""
