"""iprkit.widgets: the Jupyter UI (installed from widgets/ under this name)."""
