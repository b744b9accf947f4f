"""The service's main process (astropy-, numpy- and erfa-free): detection, gate, ledger, dispatch, workers."""
