"""Task queues (SPEC.md §7): Stripe's activities get a queue of their own.

`mahnwerk` (MAHNWERK_TASK_QUEUE) stays the one public task queue: the API starts workflows
on it and workflows, ledger, notice and collection activities run from it. The activities
that call Stripe run from the internal queue `<task queue>-stripe`, served by the same
worker process with its own, smaller number of activity slots (`stripe_concurrency`).

Why: the worker throttles its Stripe requests client-side (the token bucket in
activities/payments.py: 25 requests/s for a test key, 100/s live). A throttled activity
waits for its token while holding an activity slot; on one shared queue a due-date wave of
debits filled all 64 slots with waiting `charge` activities, and the ledger writes of the
installments already debited queued behind them (bench/RESULTS.md, issue 6). With two
queues, waiting debits wait in the Stripe queue only.

The routing is a workflow outbound interceptor, installed by the worker (worker.py), so the
workflow code names no queue. Changing an activity's task queue does not change the
workflow's commands as Temporal compares them on replay (activity id and type), so running
contracts replay unchanged.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

# Every activity that talks to Stripe (and takes a token from the worker's bucket).
STRIPE_ACTIVITIES = frozenset(
    {"charge", "payment_status", "describe_payment_method", "refund_payments"}
)


# The activity that talks to the mail server (issue 17): on a queue of its own with few slots
# (MAHNWERK_MAIL_CONCURRENCY), because a notice holds its ledger row — and so a pooled
# database connection — while the mail server takes it: a slow mail server in a due wave
# held every connection, and the ledger's writes (local activities inside workflow tasks)
# waited for one.
MAIL_ACTIVITIES = frozenset({"send_notice"})


def mail_queue(task_queue: str) -> str:
    """The internal queue of the mail activity for the workflows on `task_queue`."""
    return f"{task_queue}-mail"


def stripe_queue(task_queue: str) -> str:
    """The internal queue of Stripe's activities for the workflows on `task_queue`."""
    return f"{task_queue}-stripe"


class _StripeRoutingOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle:
        if input.activity in STRIPE_ACTIVITIES and input.task_queue is None:
            input.task_queue = stripe_queue(workflow.info().task_queue)
        elif input.activity in MAIL_ACTIVITIES and input.task_queue is None:
            input.task_queue = mail_queue(workflow.info().task_queue)
        return super().start_activity(input)


class _StripeRoutingInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_StripeRoutingOutbound(outbound))


class StripeQueueRouting(Interceptor):
    """Worker interceptor: schedule STRIPE_ACTIVITIES on `stripe_queue(...)`."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _StripeRoutingInbound
