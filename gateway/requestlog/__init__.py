"""The request log: every completion, newest first, filtered, searched and exported.

query.py reads the ledger (keyset pages on (created_at, id)); forms.py turns the query string
into a LogQuery or form errors; views.py renders the page and streams the exports.
"""
