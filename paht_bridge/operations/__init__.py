"""What an operator does by hand: replay dead letters and quarantined reports, unlink duplicates, forget a reporter, backfill."""
