"""The reliability suite (``make soak``, about 12 minutes): the service against misbehaving networks and clients.

    python -m scripts.soak                  # every part, then the "## Reliability" section of BENCHMARKS.md
    python -m scripts.soak --only overload  # one part (its figures printed; --output - writes nothing)

Each part starts the real service (``python -m app``) on a copy of the models folder, does one thing to it and
prints its figure: ``protocol`` (the head limits' cost: stock against limited httptools protocol, A/B), ``load``
(many requests: errors, memory growth), ``overload`` (goodput at 512 connections, recovery), ``slow`` (clients
trickling headers or stalling bodies: memory held, closed at the time-outs), ``drain`` (SIGTERM with requests in
flight), ``reload`` (new versions under load), ``kill`` (kill -9 during bundle writes: leftovers after the next
write) and ``fuzz`` (a bounded schemathesis run: no 5xx). ``context`` holds what they share.
"""
