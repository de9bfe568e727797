"""Reports: figures (matplotlib PNG) and the self-contained HTML report."""
