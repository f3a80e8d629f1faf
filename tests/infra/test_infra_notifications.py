"""Payment events: EventBridge rules -> encrypted SNS topic -> notify, every hop with a DLQ."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized


def test_each_payment_outcome_has_a_rule_forwarding_to_the_topic(stack: Synthesized) -> None:
    bus_id, _ = stack.only("AWS::Events::EventBus")
    for detail_type in ("PaymentSucceeded", "PaymentFailed"):
        stack.template.has_resource_properties(
            "AWS::Events::Rule",
            {
                "EventBusName": {"Ref": bus_id},
                "EventPattern": {"source": ["payment-queue"], "detail-type": [detail_type]},
                "Targets": [
                    Match.object_like(
                        {
                            "Arn": {"Ref": stack.topic("-payment-events")},
                            "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [stack.queue("-notifications-dlq"), "Arn"]}},
                        }
                    )
                ],
            },
        )


def test_notify_subscribes_to_the_topic_with_a_dead_letter_queue(stack: Synthesized) -> None:
    notify_id, _ = stack.function("notify")

    stack.template.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "lambda",
            "TopicArn": {"Ref": stack.topic("-payment-events")},
            "Endpoint": {"Fn::GetAtt": [notify_id, "Arn"]},
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [stack.queue("-notifications-dlq"), "Arn"]}},
        },
    )


def test_failed_notify_invocations_land_in_the_notifications_dlq(stack: Synthesized) -> None:
    notify_id, _ = stack.function("notify")

    stack.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": notify_id},
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {
                "OnFailure": {"Destination": {"Fn::GetAtt": [stack.queue("-notifications-dlq"), "Arn"]}}
            },
        },
    )


def test_publishers_may_put_events_on_the_bus_only(stack: Synthesized) -> None:
    bus_id, _ = stack.only("AWS::Events::EventBus")
    for name in ("process_payment", "sweeper"):
        _, function = stack.function(name)
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        policy = next(
            p for p in stack.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
        )
        put_events = [
            s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Action"] == "events:PutEvents"
        ]

        assert [s["Resource"] for s in put_events] == [{"Fn::GetAtt": [bus_id, "Arn"]}], name


def test_topics_are_encrypted_with_a_rotating_key_and_refuse_plain_http(stack: Synthesized) -> None:
    key_id, _ = stack.only("AWS::KMS::Key", EnableKeyRotation=True)

    for topic in stack.resources("AWS::SNS::Topic").values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    for policy in stack.resources("AWS::SNS::TopicPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in str(s.get("Condition")) for s in statements)


def test_the_key_policy_conditions_only_principals_that_send_the_source_account(stack: Synthesized) -> None:
    _, key = stack.only("AWS::KMS::Key")
    conditioned = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if "aws:SourceAccount" in json.dumps(s.get("Condition", {}))
    ]

    # aws:SourceAccount is not documented for EventBridge's use of the topic key: with it in
    # the conditioned statement, delivery would rest on CDK's own unconditioned statement.
    assert conditioned, "the CloudWatch statement keeps its source-account condition"
    for statement in conditioned:
        principals = statement["Principal"]["Service"]
        assert "events.amazonaws.com" not in (principals if isinstance(principals, list) else [principals])
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} for s in conditioned)


def test_eventbridge_may_publish_to_the_topic_and_its_dlq_for_this_stacks_rules_only(stack: Synthesized) -> None:
    rules = {f"{k}.Arn" for k, r in stack.resources("AWS::Events::Rule").items() if "EventPattern" in r["Properties"]}
    topic = {"Ref": stack.topic("-payment-events")}
    (topic_policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in stack.resources("AWS::SNS::TopicPolicy").values()
        if p["Properties"]["Topics"] == [topic]
    ]
    dlq = {"Ref": stack.queue("-notifications-dlq")}
    (dlq_policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in stack.resources("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [dlq]
    ]

    for statements, action in ((topic_policy, "sns:Publish"), (dlq_policy, "sqs:SendMessage")):
        from_events = [s for s in statements if s.get("Principal") == {"Service": "events.amazonaws.com"}]
        # One statement per rule, each for that rule's ARN: never an unconditioned grant to the service
        assert {".".join(s["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"]) for s in from_events} == rules
        assert all(s["Action"] == action and s["Effect"] == "Allow" for s in from_events)
