-- GETs the path given on the wrk command line; only reports.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
