"""The parts of ``make bench`` (tools/bench.py): measurements, then the report.

- ``common``    results (series of samples, single facts, errors), names, staging helpers;
- ``machine``   what the numbers were measured on, and /proc readings (memory, CPU);
- ``service``   ``modsingest watch`` as a black box: layouts, the production
                configuration, one file placed as azcam places it and timed to ``.new``;
- ``baselines`` the references the agent is judged against (byte-copy floor, astropy,
                another source tree);
- ``measure``   the run: set-up, the alternatives, the phases in rotation;
- ``report``    ratios, targets and the printed table (and JSON).
"""
