"""Reports: self-contained HTML galleries and (later) the dashboard."""
