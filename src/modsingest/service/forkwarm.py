"""Imported by the fork server before it forks any worker: warm the heavy parts once.

Why: every worker builds a ``Pipeline`` whose imports (numpy, astropy.io.fits,
the steps) and warm-up (the leap-second table, ERFA's first calls) would
otherwise run again in each worker, in parallel on the same cores, and again
whenever a dead worker is replaced.  (Since HJD/BJD are computed with ERFA
directly this is a few tenths of a second (the service is ready 0.6-0.7 s after
start in the bench), not the second and a half astropy's coordinate
machinery took.)  Done here, in the fork server, the workers inherit the warm state and
are ready almost at once; their own warm-up then costs milliseconds.

``multiprocessing`` only *imports* the preload modules (``workers.PRELOAD``), so
the work is done on import.  It must never raise: an exception here would end
the fork server, and warming is only an optimisation.
"""

from __future__ import annotations

try:
    from modsingest.logsetup import setup_logging
    from modsingest.processing import pipeline  # noqa: F401  (numpy, astropy.io.fits, the steps)
    from modsingest.processing.astrotime import warm_up

    setup_logging("info")  # a leap-second warning from the warm-up must be readable
    warm_up()
except Exception:  # pragma: no cover - the workers warm up themselves then
    pass
