"""`deepfake ui`: a local web dashboard over one workspace folder.

    WORKSPACE/
      facesets/  models/  inputs/  outputs/   what the CLI makes, listed as it is
      .jobs/ID/  job.json (the record), log.txt, out.txt (captured stdout), rc (exit status)

Every run is a subprocess of the same CLI (`python -m deepfake ...`), started by jobs.py; the server
reads the workspace and launches, stops and lists those subprocesses. It writes only uploads into
inputs/ and the label editor's FACESET/labels.json.

    workspace.py  the folder layout and the one path check every API path goes through
    specs.py      a job request (JSON) -> the CLI's argv and the device it occupies
    jobs.py       job records on disk, the per-device queue, start/stop/adopt; supervise.py runs one
    joblog.py     a job's log as a terminal shows it, and its tqdm progress
    views.py      what the pages show: faceset details, training curves, previews, checkpoints
    labels.py     the polygon label editor: faces, labels.json (via deepfake.segment.labels), predictions
    charts.py     server-drawn SVG line charts; markdown.py renders report.md / results.md
    media.py      uploads (size and type checked, never left partial) and video frames
    guard.py      token, Host and cross-site checks (WebSockets too), body types, one-line JSON errors
    app.py        the FastAPI app, assembled; server.py binds and serves it
    context.py    the one Context per app (config, workspace, jobs, devices) and the request helpers
    routes_files.py, routes_views.py, routes_jobs.py   the routes: files, what pages show, jobs
"""
