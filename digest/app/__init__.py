"""The use cases the shells call: the CLI, the web app and the scheduler present what these
return and decide nothing themselves.

    fetching       fetch the sources and store what is new
    digests        plan, rank and send the digests that are due; dry runs
    candidates     which papers a reader's next digest is chosen from, and previews
    sending        the outbox's queues for the senders (digests, transactional mail)
    subscriptions  subscribe, confirm, change a profile or an address, pause, export, erase
    feedback       "more like this", seeds, what was learned
    operator       the outbox by state, retries, bounces, reactivation
    health         `digest status`, /healthz and /metrics
    doctor         `digest doctor`: DNS records, the relay, the web app, before a first send
    meaning        paper vectors for semantic matching (with the extra)
    demo           one full cycle on the bundled sample
"""
