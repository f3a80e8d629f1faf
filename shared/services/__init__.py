"""Service functions: what each handler does, written against the ports, never against boto3.

- intake: accepting a payment request (functions/enqueue)
- reads: a job's status and the queue's (functions/status)
- operator: metrics, DLQ redrive, database health (functions/status, operator routes)
- processing: one queue message, parsed once and dispatched (functions/process_payment)
- wallet / gateway: the two payment paths the processing dispatches to
- outbox: publishing committed events, and the sweeper that repairs what was left (functions/sweeper)
"""
