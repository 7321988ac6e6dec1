"""Paper sources: each turns an HTTP response (or bundled data) into ``PaperIn`` records."""
