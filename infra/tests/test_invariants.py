"""Invariants of the deployed stack, checked on the SAM template translated to CloudFormation.

cfn-lint does not expand the SAM transform, so settings inside SAM events (the SQS trigger's
FunctionResponseTypes, the schedule's retry policy) are checked here on the translated
output. Each check returns the list of violations it found. The mutation tests break one
invariant in the SAM source, translate again and require that exactly that check reports it,
which proves every check can fail.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from translate import load_sam_template, translate

Template = dict[str, Any]

REQUIRED_RUNTIME = "provided.al2023"
MIN_VISIBILITY_FACTOR = 6
MIN_MAX_RECEIVE_COUNT = 5


# ---------------------------------------------------------------- template helpers


def resources_of_type(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == resource_type}


def logical_id(value: Any) -> str | None:
    """Return the logical id behind a `Ref` or `Fn::GetAtt`, or None for anything else."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return target[0] if isinstance(target, list) else target.split(".")[0]
    return None


def parameter_candidates(template: Template, name: str) -> list[str]:
    """Return every value a parameter can take: its AllowedValues, else its default."""
    parameter = template.get("Parameters", {})[name]
    if "AllowedValues" in parameter:
        return [str(value) for value in parameter["AllowedValues"]]
    return [str(parameter["Default"])]


def resolve_number(value: Any, template: Template, parameters: dict[str, str]) -> int:
    """Evaluate a literal, a `Ref` to a parameter or a `Fn::FindInMap` to a number.

    Raises KeyError when a mapping has no entry for the key, and ValueError for an intrinsic
    this helper does not evaluate.
    """
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        return int(value)
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        if name in parameters:
            return int(parameters[name])
        return int(template["Parameters"][name]["Default"])
    if isinstance(value, dict) and "Fn::FindInMap" in value:
        map_name, top_key, second_key = value["Fn::FindInMap"]
        top = str(resolve_number(top_key, template, parameters)) if isinstance(top_key, dict) else str(top_key)
        return int(template["Mappings"][map_name][top][second_key])
    raise ValueError(f"cannot evaluate {json.dumps(value)}")


def parameters_referenced(value: Any) -> set[str]:
    """Return the names of all `Ref`s inside a value."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            else:
                found |= parameters_referenced(item)
    elif isinstance(value, list):
        for item in value:
            found |= parameters_referenced(item)
    return found


def sqs_event_source_mappings(template: Template) -> dict[str, dict[str, Any]]:
    queues = resources_of_type(template, "AWS::SQS::Queue")
    return {
        name: mapping
        for name, mapping in resources_of_type(template, "AWS::Lambda::EventSourceMapping").items()
        if logical_id(mapping["Properties"].get("EventSourceArn")) in queues
    }


def dead_letter_queue_ids(template: Template) -> set[str]:
    ids = set()
    for queue in resources_of_type(template, "AWS::SQS::Queue").values():
        redrive = queue["Properties"].get("RedrivePolicy") or {}
        target = logical_id(redrive.get("deadLetterTargetArn"))
        if target:
            ids.add(target)
    return ids


def policy_statements(template: Template) -> list[tuple[str, dict[str, Any]]]:
    """Return (resource name, statement) for every inline IAM policy statement."""
    statements = []
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [properties["PolicyDocument"]]
        for document in documents:
            statement_list = document["Statement"]
            if isinstance(statement_list, dict):
                statement_list = [statement_list]
            statements.extend((name, statement) for statement in statement_list)
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- checks


def check_partial_batch_response(template: Template) -> list[str]:
    mappings = sqs_event_source_mappings(template)
    if not mappings:
        return ["no SQS event source mapping found"]
    violations = []
    for name, mapping in mappings.items():
        types = mapping["Properties"].get("FunctionResponseTypes", [])
        if "ReportBatchItemFailures" not in types:
            violations.append(f"{name}: FunctionResponseTypes is {types}, expected ReportBatchItemFailures")
    return violations


def check_visibility_timeout(template: Template) -> list[str]:
    """Require queue visibility >= 6 x function timeout + batching window, for every parameter value."""
    mappings = sqs_event_source_mappings(template)
    if not mappings:
        return ["no SQS event source mapping found"]
    violations = []
    functions = resources_of_type(template, "AWS::Lambda::Function")
    for name, mapping in mappings.items():
        properties = mapping["Properties"]
        queue = template["Resources"][logical_id(properties["EventSourceArn"])]["Properties"]
        function = functions[logical_id(properties["FunctionName"])]["Properties"]
        timeout_value = function.get("Timeout", 3)
        visibility_value = queue.get("VisibilityTimeout", 30)
        window = int(properties.get("MaximumBatchingWindowInSeconds", 0))

        # Try every allowed value of every parameter the two settings depend on.
        names = sorted(parameters_referenced(timeout_value) | parameters_referenced(visibility_value))
        combinations: list[dict[str, str]] = [{}]
        for parameter in names:
            combinations = [{**combo, parameter: value} for combo in combinations for value in parameter_candidates(template, parameter)]
        for combo in combinations:
            try:
                timeout = resolve_number(timeout_value, template, combo)
                visibility = resolve_number(visibility_value, template, combo)
            except (KeyError, ValueError) as error:
                violations.append(f"{name} with {combo}: cannot evaluate the timeouts ({error!r})")
                continue
            required = MIN_VISIBILITY_FACTOR * timeout + window
            if visibility < required:
                violations.append(f"{name} with {combo}: visibility timeout {visibility} s < {required} s (6 x function timeout {timeout} s + window {window} s)")
    return violations


def check_schedule_retries(template: Template) -> list[str]:
    schedules = resources_of_type(template, "AWS::Scheduler::Schedule")
    if not schedules:
        return ["no EventBridge Scheduler schedule found"]
    violations = []
    for name, schedule in schedules.items():
        # Without a RetryPolicy, Scheduler retries up to 185 times.
        attempts = schedule["Properties"]["Target"].get("RetryPolicy", {}).get("MaximumRetryAttempts", 185)
        if attempts != 0:
            violations.append(f"{name}: MaximumRetryAttempts is {attempts}, expected 0")
    return violations


def check_async_retries(template: Template) -> list[str]:
    """Require Lambda's own asynchronous retries to be off for every scheduled function."""
    configs = {logical_id(config["Properties"]["FunctionName"]): config for config in resources_of_type(template, "AWS::Lambda::EventInvokeConfig").values()}
    violations = []
    for name, schedule in resources_of_type(template, "AWS::Scheduler::Schedule").items():
        function = logical_id(schedule["Properties"]["Target"]["Arn"])
        config = configs.get(function)
        if config is None:
            violations.append(f"{function} (target of {name}): no EventInvokeConfig, so Lambda retries a failed run twice")
            continue
        # Without MaximumRetryAttempts, Lambda retries a failed asynchronous invocation twice.
        attempts = config["Properties"].get("MaximumRetryAttempts", 2)
        if attempts != 0:
            violations.append(f"{function}: asynchronous MaximumRetryAttempts is {attempts}, expected 0")
    return violations


def check_no_wildcard_actions(template: Template) -> list[str]:
    violations = []
    for name, statement in policy_statements(template):
        if "NotAction" in statement:
            violations.append(f"{name}: statement uses NotAction")
        for action in as_list(statement.get("Action", [])):
            if isinstance(action, str) and "*" in action:
                violations.append(f"{name}: wildcard action {action!r}")
    return violations


def check_resources_by_arn(template: Template) -> list[str]:
    """Reject `Resource: "*"` and AWS managed policies, which this test cannot inspect offline."""
    violations = []
    for name, statement in policy_statements(template):
        if "NotResource" in statement:
            violations.append(f"{name}: statement uses NotResource")
        for resource in as_list(statement.get("Resource", [])):
            if resource == "*":
                violations.append(f"{name}: statement allows {statement.get('Action')} on every resource")
    for name, role in resources_of_type(template, "AWS::IAM::Role").items():
        managed = role["Properties"].get("ManagedPolicyArns")
        if managed:
            violations.append(f"{name}: attaches managed policies {managed}")
    return violations


def check_queues_encrypted(template: Template) -> list[str]:
    queues = resources_of_type(template, "AWS::SQS::Queue")
    violations = []
    if len(queues) < 2:
        violations.append(f"expected a queue and a dead-letter queue, found {sorted(queues)}")
    for name, queue in queues.items():
        properties = queue["Properties"]
        if properties.get("SqsManagedSseEnabled") is not True and "KmsMasterKeyId" not in properties:
            violations.append(f"{name}: neither SqsManagedSseEnabled nor KmsMasterKeyId is set")
    return violations


def check_table_encrypted(template: Template) -> list[str]:
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    if not tables:
        return ["no DynamoDB table found"]
    violations = []
    for name, table in tables.items():
        sse = table["Properties"].get("SSESpecification", {})
        if sse.get("SSEEnabled") is not True:
            violations.append(f"{name}: SSESpecification.SSEEnabled is {sse.get('SSEEnabled')}, expected true")
    return violations


def check_redrive(template: Template) -> list[str]:
    mappings = sqs_event_source_mappings(template)
    if not mappings:
        return ["no SQS event source mapping found"]
    queues = resources_of_type(template, "AWS::SQS::Queue")
    violations = []
    for mapping in mappings.values():
        queue_name = logical_id(mapping["Properties"]["EventSourceArn"])
        redrive = queues[queue_name]["Properties"].get("RedrivePolicy")
        if not redrive:
            violations.append(f"{queue_name}: no RedrivePolicy")
            continue
        if logical_id(redrive.get("deadLetterTargetArn")) not in queues:
            violations.append(f"{queue_name}: deadLetterTargetArn is not a queue of this stack")
        count = int(redrive.get("maxReceiveCount", 0))
        if count < MIN_MAX_RECEIVE_COUNT:
            violations.append(f"{queue_name}: maxReceiveCount is {count}, expected at least {MIN_MAX_RECEIVE_COUNT}")
    for name in dead_letter_queue_ids(template):
        retention = int(queues[name]["Properties"].get("MessageRetentionPeriod", 345600))
        if retention != 1209600:
            violations.append(f"{name}: dead-letter retention is {retention} s, expected 14 days (1209600 s)")
    return violations


def check_point_in_time_recovery(template: Template) -> list[str]:
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    if not tables:
        return ["no DynamoDB table found"]
    violations = []
    for name, table in tables.items():
        pitr = table["Properties"].get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            violations.append(f"{name}: point-in-time recovery is off")
    return violations


def check_runtime(template: Template) -> list[str]:
    functions = resources_of_type(template, "AWS::Lambda::Function")
    violations = []
    if len(functions) != 2:
        violations.append(f"expected the fetcher and writer functions, found {sorted(functions)}")
    for name, function in functions.items():
        runtime = function["Properties"].get("Runtime")
        if runtime != REQUIRED_RUNTIME:
            violations.append(f"{name}: runtime {runtime}, expected {REQUIRED_RUNTIME}")
    return violations


def check_china_compatible(template: Template) -> list[str]:
    """Reject X-Ray active tracing and ARNs with a fixed partition, both of which break aws-cn."""
    violations = []
    for name, function in resources_of_type(template, "AWS::Lambda::Function").items():
        mode = function["Properties"].get("TracingConfig", {}).get("Mode")
        if mode == "Active":
            violations.append(f"{name}: X-Ray active tracing is not available in the China regions")
    for match in sorted(set(re.findall(r"arn:aws[-a-z]*:[^\"]*", json.dumps(template)))):
        violations.append(f"ARN with a fixed partition (use ${{AWS::Partition}}): {match}")
    return violations


CHECKS: dict[str, Callable[[Template], list[str]]] = {
    "partial_batch_response": check_partial_batch_response,
    "visibility_timeout": check_visibility_timeout,
    "schedule_retries": check_schedule_retries,
    "async_retries": check_async_retries,
    "no_wildcard_actions": check_no_wildcard_actions,
    "resources_by_arn": check_resources_by_arn,
    "queues_encrypted": check_queues_encrypted,
    "table_encrypted": check_table_encrypted,
    "redrive": check_redrive,
    "point_in_time_recovery": check_point_in_time_recovery,
    "runtime": check_runtime,
    "china_compatible": check_china_compatible,
}


# ---------------------------------------------------------------- the template as written


@pytest.fixture(scope="module")
def sam_template() -> Template:
    return load_sam_template()


@pytest.fixture(scope="module")
def translated(sam_template: Template) -> Template:
    return translate(sam_template)


@pytest.mark.parametrize("check_name", sorted(CHECKS))
def test_template_holds_invariant(translated: Template, check_name: str) -> None:
    assert CHECKS[check_name](translated) == []


def test_china_region_translation(sam_template: Template) -> None:
    assert check_china_compatible(translate(sam_template, region="cn-north-1")) == []


# ---------------------------------------------------------------- mutations


def resource_properties(template: Template, name: str) -> dict[str, Any]:
    return template["Resources"][name]["Properties"]


def policy_statement(template: Template, role: str, sid: str) -> dict[str, Any]:
    statements = resource_properties(template, role)["Policies"][0]["PolicyDocument"]["Statement"]
    return next(statement for statement in statements if statement.get("Sid") == sid)


def sqs_event(template: Template) -> dict[str, Any]:
    return resource_properties(template, "WriterFunction")["Events"]["Sheets"]["Properties"]


def schedule_event(template: Template) -> dict[str, Any]:
    return resource_properties(template, "FetcherFunction")["Events"]["Schedule"]["Properties"]


def drop_response_types(t: Template) -> None:
    del sqs_event(t)["FunctionResponseTypes"]


def misspell_response_type(t: Template) -> None:
    sqs_event(t)["FunctionResponseTypes"] = ["ReportBatchItemFailure"]


def shorten_mapped_visibility(t: Template) -> None:
    t["Mappings"]["WriterVisibility"]["900"]["VisibilityTimeout"] = 900


def allow_unmapped_writer_timeout(t: Template) -> None:
    t["Parameters"]["WriterTimeout"]["AllowedValues"].append(240)


def fix_visibility_below_timeout(t: Template) -> None:
    resource_properties(t, "SheetQueue")["VisibilityTimeout"] = 300


def add_batching_window(t: Template) -> None:
    # 720 s visibility leaves no room for a window on top of 6 x 120 s.
    sqs_event(t)["MaximumBatchingWindowInSeconds"] = 30


def drop_schedule_retry_policy(t: Template) -> None:
    del schedule_event(t)["RetryPolicy"]


def allow_schedule_retries(t: Template) -> None:
    schedule_event(t)["RetryPolicy"]["MaximumRetryAttempts"] = 2


def allow_async_retries(t: Template) -> None:
    resource_properties(t, "FetcherFunction")["EventInvokeConfig"]["MaximumRetryAttempts"] = 2


def widen_sqs_action(t: Template) -> None:
    policy_statement(t, "WriterRole", "ConsumeSheetQueue")["Action"] = ["sqs:*"]


def add_star_action(t: Template) -> None:
    policy_statement(t, "FetcherRole", "QueueSheets")["Action"] = "*"


def add_star_resource(t: Template) -> None:
    policy_statement(t, "FetcherRole", "ReadCredentials")["Resource"] = "*"


def use_sam_generated_role(t: Template) -> None:
    # SAM then attaches AWSLambdaSQSQueueExecutionRole, whose actions apply to every queue.
    del resource_properties(t, "WriterFunction")["Role"]


def disable_queue_sse(t: Template) -> None:
    resource_properties(t, "SheetQueue")["SqsManagedSseEnabled"] = False


def disable_dead_letter_sse(t: Template) -> None:
    del resource_properties(t, "SheetDeadLetterQueue")["SqsManagedSseEnabled"]


def disable_table_sse(t: Template) -> None:
    resource_properties(t, "StateTable")["SSESpecification"]["SSEEnabled"] = False


def lower_max_receive_count(t: Template) -> None:
    resource_properties(t, "SheetQueue")["RedrivePolicy"]["maxReceiveCount"] = 4


def drop_redrive_policy(t: Template) -> None:
    del resource_properties(t, "SheetQueue")["RedrivePolicy"]


def shorten_dead_letter_retention(t: Template) -> None:
    resource_properties(t, "SheetDeadLetterQueue")["MessageRetentionPeriod"] = 345600


def disable_pitr(t: Template) -> None:
    resource_properties(t, "StateTable")["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] = False


def use_old_runtime(t: Template) -> None:
    resource_properties(t, "FetcherFunction")["Runtime"] = "provided.al2"


def enable_tracing(t: Template) -> None:
    resource_properties(t, "WriterFunction")["Tracing"] = "Active"


def hardcode_partition(t: Template) -> None:
    policy_statement(t, "FetcherRole", "ReadConfiguration")["Resource"] = "arn:aws:ssm:us-east-1:123456789012:parameter/countsync/config"


# (mutation, check that must report it). A mutation breaks only that invariant, except where
# SIDE_EFFECTS lists a second one that the same edit breaks by its nature.
MUTATIONS: list[tuple[Callable[[Template], None], str]] = [
    (drop_response_types, "partial_batch_response"),
    (misspell_response_type, "partial_batch_response"),
    (shorten_mapped_visibility, "visibility_timeout"),
    (allow_unmapped_writer_timeout, "visibility_timeout"),
    (fix_visibility_below_timeout, "visibility_timeout"),
    (add_batching_window, "visibility_timeout"),
    (drop_schedule_retry_policy, "schedule_retries"),
    (allow_schedule_retries, "schedule_retries"),
    (allow_async_retries, "async_retries"),
    (widen_sqs_action, "no_wildcard_actions"),
    (add_star_action, "no_wildcard_actions"),
    (add_star_resource, "resources_by_arn"),
    (use_sam_generated_role, "resources_by_arn"),
    (disable_queue_sse, "queues_encrypted"),
    (disable_dead_letter_sse, "queues_encrypted"),
    (disable_table_sse, "table_encrypted"),
    (lower_max_receive_count, "redrive"),
    (drop_redrive_policy, "redrive"),
    (shorten_dead_letter_retention, "redrive"),
    (disable_pitr, "point_in_time_recovery"),
    (use_old_runtime, "runtime"),
    (enable_tracing, "china_compatible"),
    (hardcode_partition, "china_compatible"),
]

SIDE_EFFECTS: dict[str, set[str]] = {
    # SAM writes the managed policy ARNs with the partition of the translation region.
    "use_sam_generated_role": {"china_compatible"},
}


@pytest.mark.parametrize(("mutate", "check_name"), MUTATIONS, ids=[mutate.__name__ for mutate, _ in MUTATIONS])
def test_mutation_caught(sam_template: Template, mutate: Callable[[Template], None], check_name: str) -> None:
    mutated = copy.deepcopy(sam_template)
    mutate(mutated)
    translated_mutant = translate(mutated)

    caught = CHECKS[check_name](translated_mutant)
    assert caught, f"{check_name} did not report {mutate.__name__}"

    # Every other check still passes, so each check is tied to one cause.
    expected = {check_name} | SIDE_EFFECTS.get(mutate.__name__, set())
    others = {name: CHECKS[name](translated_mutant) for name in CHECKS if name not in expected}
    assert {name: found for name, found in others.items() if found} == {}


def test_every_check_has_mutation() -> None:
    assert {check_name for _, check_name in MUTATIONS} == set(CHECKS)
