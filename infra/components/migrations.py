"""Schema migrations applied by every deployment that changes them, before new code runs."""

from __future__ import annotations

from aws_cdk import Duration, triggers
from aws_cdk import aws_lambda as lambda_
from constructs import Construct


class Migrations(Construct):
    """Invokes the migrate function (the same `shared.migrate` that `make run` applies) after
    the database and proxy exist and before the functions and API that need the new schema.

    `after` must hold everything the first connection needs besides the function itself: the
    database and proxy (with the proxy's ingress rule for the functions), and the Secrets
    Manager endpoint the credentials are read through from the isolated subnets. Without the
    endpoint in the list CloudFormation may invoke the trigger while the endpoint is still
    being created, and the first deployment fails. The function also retries its first
    connection for a bounded time (functions/migrate/handler.py): private DNS and the proxy's
    target registration can lag behind CREATE_COMPLETE.

    The trigger re-runs whenever the migrate function's code changes, and its code contains
    `shared/migrations/*.sql` and `shared/sql/*.sql`; a failed migration fails the deployment, which rolls back.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        migrate: lambda_.Function,
        after: list[Construct],
        before: list[Construct],
    ) -> None:
        super().__init__(scope, construct_id)
        self.trigger = triggers.Trigger(
            self,
            "Apply",
            handler=migrate,
            execute_after=after,
            execute_before=before,
            execute_on_handler_change=True,
            invocation_type=triggers.InvocationType.REQUEST_RESPONSE,
            timeout=Duration.minutes(5),
        )
