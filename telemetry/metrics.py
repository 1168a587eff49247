"""Every metric of Qunzhi, in one place (names are ``qunzhi_*``; labels are codes, never people)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLBACKS = Counter("qunzhi_callbacks_total", "Platform callbacks answered, by platform and outcome",
                    ["platform", "outcome"])  # outcome: stored | repeat | refused | deadline | error
WRITER_BATCH = Histogram("qunzhi_writer_batch_events", "Events per writer batch (one transaction)",
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
WRITER_SECONDS = Histogram("qunzhi_writer_batch_seconds", "Time to store one writer batch",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
OUTBOX_DELIVERIES = Counter("qunzhi_outbox_deliveries_total", "Outbox deliveries by channel and outcome",
                            ["channel", "outcome"])  # outcome: sent | retry | dead | uncertain | withdrawn | undeliverable
OUTBOX_QUEUE = Gauge("qunzhi_outbox_queue", "Outbox rows by status, as the last scrape found them",
                     ["status"], multiprocess_mode="mostrecent")
JOB_RUNS = Counter("qunzhi_job_runs_total", "Scheduled job runs by job and outcome", ["job", "outcome"])
