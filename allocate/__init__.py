"""Allocate: reserve shared stock in a warehouse without ever overselling."""
